//! Verdicts of `certificates` on built objects.

use super::*;
use crate::certs::{issue, CertRequest, Issued};
use crate::cluster::check::report::Status;

const DAY: Duration = Duration::from_secs(86_400);

fn issued(at: SystemTime, validity: Duration) -> Issued {
    issue(
        &CertRequest {
            service: "persistence-webhook".into(),
            namespace: "persistence-webhook".into(),
            dns: vec![],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            validity,
        },
        at,
    )
    .expect("issued")
}

fn run(
    bundle: Option<&str>,
    serving: &Lookup<ServingSecret>,
    name: &str,
    now: SystemTime,
) -> (Vec<Check>, Option<bool>) {
    judge(&Inputs {
        ca_bundle: bundle.map(str::as_bytes),
        serving,
        secret_ref: "persistence-webhook/persistence-webhook-tls",
        in_cluster: false,
        deployment: "persistence-webhook",
        server_name: name,
        now,
    })
}

fn status(checks: &[Check], id: &str) -> (Status, String) {
    let c = checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} in {checks:#?}"));
    (c.result, c.detail.clone())
}

fn found(cert: &str) -> Lookup<ServingSecret> {
    Lookup::Found(ServingSecret::new("persistence-webhook-tls", Some(cert)))
}

const SVC: &str = "persistence-webhook.persistence-webhook.svc";

#[test]
fn a_fresh_pair_passes_every_check() {
    let now = SystemTime::now();
    let pki = issued(now, 365 * DAY);
    let (checks, ok) = run(Some(&pki.ca_cert_pem), &found(&pki.cert_pem), SVC, now);
    assert_eq!(ok, Some(true));
    assert_eq!(checks.len(), 6);
    for c in &checks {
        assert_eq!(c.result, Status::Passed, "{c:#?}");
    }
    // The URL registration's IP is named too.
    let (checks, _) = run(
        Some(&pki.ca_cert_pem),
        &found(&pki.cert_pem),
        "127.0.0.1",
        now,
    );
    assert_eq!(status(&checks, "serving-cert-names").0, Status::Passed);
}

#[test]
fn a_bundle_from_another_ca_fails_verification_only() {
    let now = SystemTime::now();
    let pki = issued(now, 365 * DAY);
    let other = issued(now, 365 * DAY);
    let (checks, ok) = run(Some(&other.ca_cert_pem), &found(&pki.cert_pem), SVC, now);
    assert_eq!(ok, Some(false));
    let (s, detail) = status(&checks, "ca-bundle-verifies");
    assert_eq!(s, Status::Failed, "{detail}");
    assert!(detail.contains("does not verify"), "{detail}");
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.result == Status::Failed)
        .map(|c| c.id)
        .collect();
    assert_eq!(failed, ["ca-bundle-verifies"]);
    // Both CAs in the bundle (a rotation's overlap): it verifies.
    let both = format!("{}{}", other.ca_cert_pem, pki.ca_cert_pem);
    let (_, ok) = run(Some(&both), &found(&pki.cert_pem), SVC, now);
    assert_eq!(ok, Some(true));
}

#[test]
fn names_expiry_and_missing_pieces() {
    let now = SystemTime::now();
    let pki = issued(now, 365 * DAY);
    let (checks, _) = run(
        Some(&pki.ca_cert_pem),
        &found(&pki.cert_pem),
        "other.ns.svc",
        now,
    );
    let (s, d) = status(&checks, "serving-cert-names");
    assert_eq!(s, Status::Failed);
    assert!(
        d.contains("does not cover other.ns.svc") && d.contains(SVC),
        "{d}"
    );

    // 10 days left: both warn; expired: both fail, and it still verifies.
    let short = issued(now, 10 * DAY);
    let (checks, ok) = run(Some(&short.ca_cert_pem), &found(&short.cert_pem), SVC, now);
    assert_eq!(ok, Some(true));
    assert_eq!(status(&checks, "serving-cert-expiry").0, Status::Warning);
    assert_eq!(status(&checks, "ca-expiry").0, Status::Warning);
    let later = now + 20 * DAY;
    let (checks, ok) = run(
        Some(&short.ca_cert_pem),
        &found(&short.cert_pem),
        SVC,
        later,
    );
    assert_eq!(ok, Some(true), "the chain is judged apart from the dates");
    let (s, d) = status(&checks, "serving-cert-expiry");
    assert_eq!((s, d.contains("expired on")), (Status::Failed, true), "{d}");
    assert_eq!(status(&checks, "ca-expiry").0, Status::Failed);

    let (checks, ok) = run(None, &found(&pki.cert_pem), SVC, now);
    assert_eq!(ok, None);
    assert_eq!(status(&checks, "ca-bundle").0, Status::Failed);
    assert_eq!(status(&checks, "ca-bundle-verifies").0, Status::Skipped);
    assert_eq!(status(&checks, "ca-expiry").0, Status::Skipped);

    let (checks, ok) = run(Some("garbage"), &Lookup::Missing, SVC, now);
    assert_eq!(ok, None);
    assert_eq!(status(&checks, "ca-bundle").0, Status::Failed);
    assert_eq!(status(&checks, "serving-secret").0, Status::Failed);
    for id in ["serving-cert-names", "serving-cert-expiry"] {
        assert_eq!(status(&checks, id).0, Status::Skipped, "{id}");
    }
    let no_crt = Lookup::Found(ServingSecret::new("persistence-webhook-tls", None));
    let (checks, _) = run(Some(&pki.ca_cert_pem), &no_crt, SVC, now);
    let (s, d) = status(&checks, "serving-secret");
    assert_eq!((s, d.contains("no tls.crt")), (Status::Failed, true));
    let denied = Lookup::Error("forbidden".into());
    let (checks, _) = run(Some(&pki.ca_cert_pem), &denied, SVC, now);
    assert_eq!(status(&checks, "serving-secret").0, Status::Warning);
}

#[test]
fn wildcards_cover_one_label() {
    let sans = vec!["*.ns.svc".to_owned()];
    assert!(covers_dns(&sans, "hook.ns.svc"));
    assert!(covers_dns(&sans, "HOOK.ns.svc"));
    assert!(!covers_dns(&sans, "a.hook.ns.svc"));
    assert!(!covers_dns(&sans, "ns.svc"));
}

/// A serving certificate whose validity ends before its CA's begins: the
/// message says what is wrong with the dates in words (not a Rust debug
/// value), and the hint is to issue it again, not to change the caBundle.
#[test]
fn a_certificate_outside_its_cas_validity_is_explained_in_words() {
    use rcgen::{CertificateParams, KeyPair};
    let now = SystemTime::now();
    // The CA starts in ten days; the leaf it signs ended yesterday.
    let ca = issued(now + 10 * DAY, 365 * DAY);
    let ca_key = KeyPair::from_pem(&ca.ca_key_pem).expect("CA key");
    let ca_cert = CertificateParams::from_ca_cert_pem(&ca.ca_cert_pem)
        .expect("CA params")
        .self_signed(&ca_key)
        .expect("CA cert");
    let mut leaf = CertificateParams::new(vec![SVC.to_owned()]).expect("leaf params");
    leaf.not_before = time::OffsetDateTime::from(now - 3 * DAY);
    leaf.not_after = time::OffsetDateTime::from(now - DAY);
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("signed");
    let (checks, ok) = run(Some(&ca.ca_cert_pem), &found(&leaf.pem()), SVC, now);
    assert_eq!(ok, Some(false));
    let c = checks
        .iter()
        .find(|c| c.id == "ca-bundle-verifies")
        .expect("the check");
    assert_eq!(c.result, Status::Failed, "{c:#?}");
    assert!(c.detail.contains("never overlap"), "{}", c.detail);
    assert!(
        !c.detail.contains("UnixTime") && !c.detail.contains("CertExpired"),
        "{}",
        c.detail
    );
    let hint = c.hint.as_deref().unwrap_or_default();
    assert!(hint.starts_with("issue tls.crt again"), "{hint}");
}

/// Time left reads the same on two runs a moment apart, and a one-day
/// certificate is counted in hours ("in 0 days" and "in 1 days" were both
/// seen for it).
#[test]
fn time_left_is_stable_and_in_hours_under_two_days() {
    let cases = [
        (86_400 - 30, "24 hours"),
        (86_400 + 30, "24 hours"),
        (3 * 3_600, "3 hours"),
        (2 * 86_400 - 1, "48 hours"),
        (2 * 86_400, "2 days"),
        (30 * 86_400 - 60, "30 days"),
        (3_600, "60 minutes"),
        (60, "1 minute"),
        (5 * 86_400 + 43_199, "5 days"),
    ];
    for (secs, want) in cases {
        assert_eq!(remaining(secs), want, "{secs} s");
    }
    let now = SystemTime::now();
    let pki = issued(now, DAY);
    for later in [Duration::ZERO, Duration::from_secs(90)] {
        let (checks, _) = run(
            Some(&pki.ca_cert_pem),
            &found(&pki.cert_pem),
            SVC,
            now + later,
        );
        let (_, detail) = status(&checks, "serving-cert-expiry");
        assert!(detail.contains("(in 24 hours)"), "{detail}");
    }
}

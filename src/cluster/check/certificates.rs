//! Verdicts on the certificates (the "certificates" group): the caBundle
//! parses, the serving Secret holds a certificate, the caBundle verifies it
//! (chain and signatures, as the API server's TLS client would), its names
//! cover the name the API server dials, and neither it nor the CA is
//! expired or expiring within 30 days. Pure: the clock is passed in.

use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::objects::{Lookup, ServingSecret};
use super::report::Check;

/// Warn when a certificate expires within this.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the certificate checks look at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The webhook configuration's caBundle (`None`: absent or empty).
    pub ca_bundle: Option<&'a [u8]>,
    /// The serving Secret.
    pub serving: &'a Lookup<ServingSecret>,
    /// `namespace/name` of the serving Secret, for messages.
    pub secret_ref: &'a str,
    /// The Secret is the one `serve --certificates in-cluster` creates and
    /// renews itself (else mounted files, from the overlays' Secret).
    pub in_cluster: bool,
    /// The webhook's Deployment, whose logs say why it has not created it.
    pub deployment: &'a str,
    /// The name the API server dials (`svc.ns.svc` or the URL's host).
    pub server_name: &'a str,
    /// Now.
    pub now: SystemTime,
}

/// One parsed certificate, with what the messages and checks need.
struct Cert {
    der: CertificateDer<'static>,
    subject: String,
    issuer: String,
    not_before: i64,
    not_after: i64,
    dns: Vec<String>,
    ips: Vec<std::net::IpAddr>,
}

fn parse_pem(pem: &[u8]) -> Result<Vec<Cert>, String> {
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if ders.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    ders.into_iter()
        .map(|der| {
            let (_, x) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| format!("not an X.509 certificate: {e}"))?;
            Ok(describe(&x, der.clone()))
        })
        .collect()
}

fn describe(x: &X509Certificate<'_>, der: CertificateDer<'static>) -> Cert {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(std::net::IpAddr::from(
                        <[u8; 4]>::try_from(*b).unwrap_or_default(),
                    )),
                    16 => ips.push(std::net::IpAddr::from(
                        <[u8; 16]>::try_from(*b).unwrap_or_default(),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let v = x.validity();
    Cert {
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        dns,
        ips,
        der,
    }
}

/// `YYYY-MM-DD` of a unix time.
fn date(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(d) => format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => format!("@{secs}"),
    }
}

/// Why a CA does not verify the chain.
enum Unverified {
    /// The leaf's and the CA's validity never overlap.
    Dates(String),
    /// Anything else (issuer, signature, usage), in words.
    Chain(String),
}

impl Unverified {
    fn text(&self) -> &str {
        match self {
            Unverified::Dates(t) | Unverified::Chain(t) => t,
        }
    }
}

/// Whether `ca` verifies the chain, judged at a moment when both the leaf
/// and the CA are valid (the dates are judged by the expiry checks).
fn verifies(chain: &[Cert], ca: &Cert) -> Result<(), Unverified> {
    let Some(leaf) = chain.first() else {
        return Err(Unverified::Chain("no certificate".into()));
    };
    let anchor = webpki::anchor_from_trusted_cert(&ca.der).map_err(|e| {
        Unverified::Chain(format!(
            "{} is not usable as a CA: {}",
            ca.subject,
            in_words(&e, ca)
        ))
    })?;
    let ee = webpki::EndEntityCert::try_from(&leaf.der).map_err(|e| {
        Unverified::Chain(format!(
            "the serving certificate is refused: {}",
            in_words(&e, ca)
        ))
    })?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..].iter().map(|c| c.der.clone()).collect();
    let from = leaf.not_before.max(ca.not_before);
    let to = leaf.not_after.min(ca.not_after);
    if from > to {
        // No moment at which both are valid: no client can ever accept it.
        return Err(Unverified::Dates(format!(
            "the serving certificate is valid from {} to {} and {} from {} to {}: the two never overlap, so no client ever accepts the pair",
            date(leaf.not_before),
            date(leaf.not_after),
            ca.subject,
            date(ca.not_before),
            date(ca.not_after)
        )));
    }
    let at = from + (to - from) / 2;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(at).unwrap_or(0)));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &intermediates,
        at,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| Unverified::Chain(in_words(&e, ca)))
}

/// A chain-verification error as a sentence (webpki's own text is a Rust
/// debug value).
fn in_words(e: &webpki::Error, ca: &Cert) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => format!("it is not issued by {}", ca.subject),
        E::InvalidSignatureForPublicKey => {
            format!("its signature does not verify with the key of {}", ca.subject)
        }
        E::CaUsedAsEndEntity => "the serving certificate is itself a CA".to_owned(),
        E::EndEntityUsedAsCa => format!("{} is not a CA certificate", ca.subject),
        E::RequiredEkuNotFoundContext(_) => {
            "the serving certificate is not for server authentication (extended key usage serverAuth is missing)".to_owned()
        }
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "it is signed with an algorithm Kubernetes clients do not accept".to_owned()
        }
        E::BadDer | E::BadDerTime | E::TrailingData(_) => "it is not valid DER".to_owned(),
        other => format!("verification failed ({other})"),
    }
}

/// Judges the certificates. The flag says whether the caBundle verifies
/// the serving certificate (`None`: it could not be judged), which the
/// probes need.
pub fn judge(input: &Inputs<'_>) -> (Vec<Check>, Option<bool>) {
    let now = crate::cluster::certificates::material::unix(input.now);
    let mut checks = Vec::new();
    let fix_bundle = "self-managed: persistence-webhook certs --out manifests/overlays/self-managed/certs, then kubectl apply -k manifests/overlays/self-managed; cert-manager: check the cert-manager.io/inject-ca-from annotation and the cainjector's logs";

    const BUNDLE: &str = "caBundle holds the CA";
    let bundle = match input.ca_bundle {
        None => {
            checks.push(Check::fail(
                "ca-bundle",
                BUNDLE,
                "clientConfig.caBundle is empty: the API server cannot trust the webhook",
                fix_bundle,
            ));
            None
        }
        Some(pem) => match parse_pem(pem) {
            Ok(cas) => {
                let names: Vec<&str> = cas.iter().map(|c| c.subject.as_str()).collect();
                checks.push(Check::pass(
                    "ca-bundle",
                    BUNDLE,
                    format!("{} certificate(s): {}", cas.len(), names.join("; ")),
                ));
                Some(cas)
            }
            Err(e) => {
                checks.push(Check::fail(
                    "ca-bundle",
                    BUNDLE,
                    format!("clientConfig.caBundle: {e}"),
                    fix_bundle,
                ));
                None
            }
        },
    };

    let secret_title = format!("serving Secret {} holds the certificate", input.secret_ref);
    let namespace = input.secret_ref.split('/').next().unwrap_or_default();
    let fix_secret = if input.in_cluster {
        format!(
            "serve creates it at start: kubectl -n {namespace} logs deploy/{} for its certificate lines, and check its Role may create Secrets there; another name: --tls-secret",
            input.deployment
        )
    } else {
        format!(
            "self-managed: persistence-webhook certs --out manifests/overlays/self-managed/certs && kubectl apply -k manifests/overlays/self-managed; cert-manager: kubectl describe certificate -n {namespace}; another name: --tls-secret"
        )
    };
    let chain = match input.serving {
        Lookup::Missing => {
            checks.push(Check::fail(
                "serving-secret",
                secret_title,
                if input.in_cluster {
                    "not found: serve --certificates in-cluster has not created it (its pods have not started, or may not create it)"
                } else {
                    "not found: the webhook's pods cannot start"
                },
                fix_secret,
            ));
            None
        }
        Lookup::Error(e) => {
            checks.push(super::objects::unreadable(
                "serving-secret",
                secret_title,
                "it",
                e,
                "secrets",
            ));
            None
        }
        Lookup::Found(secret) => match secret.tls_crt.as_deref().map(parse_pem) {
            None => {
                let keys: Vec<&str> = secret.keys.iter().map(String::as_str).collect();
                checks.push(Check::fail(
                    "serving-secret",
                    secret_title,
                    format!("it has no tls.crt (keys: {})", keys.join(", ")),
                    fix_secret,
                ));
                None
            }
            Some(Err(e)) => {
                checks.push(Check::fail(
                    "serving-secret",
                    secret_title,
                    format!("tls.crt: {e}"),
                    fix_secret,
                ));
                None
            }
            Some(Ok(chain)) => {
                checks.push(Check::pass(
                    "serving-secret",
                    secret_title,
                    format!("{}, issued by {}", chain[0].subject, chain[0].issuer),
                ));
                Some(chain)
            }
        },
    };

    const VERIFIES: &str = "caBundle verifies the serving certificate";
    let mut verifying: Vec<&Cert> = Vec::new();
    let verdict = match (&bundle, &chain) {
        (Some(cas), Some(chain)) => {
            let mut errors = Vec::new();
            for ca in cas {
                match verifies(chain, ca) {
                    Ok(()) => verifying.push(ca),
                    Err(e) => errors.push(e),
                }
            }
            if verifying.is_empty() {
                let names: Vec<&str> = cas.iter().map(|c| c.subject.as_str()).collect();
                let dates_only = errors.iter().all(|e| matches!(e, Unverified::Dates(_)));
                let texts: Vec<&str> = errors.iter().map(Unverified::text).collect();
                let hint = if dates_only {
                    "issue tls.crt again from the CA in caBundle, within its validity: persistence-webhook certs --renew --out DIR; re-apply the overlay (self-managed), or renew the Certificate (cert-manager)"
                } else {
                    "put the CA that issued tls.crt into caBundle: persistence-webhook certs --renew --out DIR keeps the CA; re-apply the overlay (self-managed), or fix the inject-ca-from annotation (cert-manager)"
                };
                checks.push(Check::fail(
                    "ca-bundle-verifies",
                    VERIFIES,
                    format!(
                        "the certificate is issued by {}, which the caBundle ({}) does not verify ({}): the API server refuses the webhook's TLS",
                        chain[0].issuer,
                        names.join("; "),
                        texts.join("; ")
                    ),
                    hint,
                ));
                Some(false)
            } else {
                let names: Vec<&str> = verifying.iter().map(|c| c.subject.as_str()).collect();
                checks.push(Check::pass(
                    "ca-bundle-verifies",
                    VERIFIES,
                    format!("by {}", names.join("; ")),
                ));
                Some(true)
            }
        }
        _ => {
            checks.push(Check::skip(
                "ca-bundle-verifies",
                VERIFIES,
                "needs the caBundle and the serving certificate",
            ));
            None
        }
    };

    const NAMES: &str = "serving certificate names the webhook's address";
    match &chain {
        Some(chain) => {
            let leaf = &chain[0];
            let want = input.server_name;
            let ok = match want.parse::<std::net::IpAddr>() {
                Ok(ip) => leaf.ips.contains(&ip),
                Err(_) => covers_dns(&leaf.dns, want),
            };
            // webpki agrees (it is what a Rust client would apply).
            let webpki_ok = ServerName::try_from(want.to_owned()).ok().is_some_and(|n| {
                webpki::EndEntityCert::try_from(&leaf.der)
                    .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&n).is_ok())
            });
            let mut names: Vec<String> = leaf.dns.clone();
            names.extend(leaf.ips.iter().map(|i| i.to_string()));
            if ok && webpki_ok {
                checks.push(Check::pass(
                    "serving-cert-names",
                    NAMES,
                    format!("covers {want}"),
                ));
            } else {
                checks.push(Check::fail(
                    "serving-cert-names",
                    NAMES,
                    format!(
                        "does not cover {want} (it names: {}): the API server refuses the webhook's TLS",
                        if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
                    ),
                    "issue it for the Service: persistence-webhook certs --service NAME --namespace NS --renew --out DIR (or fix dnsNames in the cert-manager Certificate)",
                ));
            }
        }
        None => checks.push(Check::skip(
            "serving-cert-names",
            NAMES,
            "needs the serving certificate",
        )),
    }

    const LEAF_EXPIRY: &str = "serving certificate is valid for 30 days or more";
    match &chain {
        Some(chain) => checks.push(expiry(
            "serving-cert-expiry",
            LEAF_EXPIRY,
            &chain[0],
            now,
            "renew it: persistence-webhook certs --renew --out DIR and re-apply (self-managed; the webhook reloads it); cert-manager renews by itself: kubectl describe certificate",
        )),
        None => checks.push(Check::skip(
            "serving-cert-expiry",
            LEAF_EXPIRY,
            "needs the serving certificate",
        )),
    }

    const CA_EXPIRY: &str = "CA is valid for 30 days or more";
    match &bundle {
        Some(cas) => {
            // The CA that matters is the one that verifies; without one, all.
            let judged: Vec<&Cert> = if verifying.is_empty() {
                cas.iter().collect()
            } else {
                verifying
            };
            let soonest = judged.iter().min_by_key(|c| c.not_after).copied();
            if let Some(ca) = soonest {
                checks.push(expiry(
                    "ca-expiry",
                    CA_EXPIRY,
                    ca,
                    now,
                    "make a new CA and put old and new in caBundle until every serving certificate is reissued: persistence-webhook certs --force --out DIR, then re-apply the overlay",
                ));
            }
        }
        None => checks.push(Check::skip("ca-expiry", CA_EXPIRY, "needs the caBundle")),
    }
    (checks, verdict)
}

fn expiry(id: &'static str, title: &str, cert: &Cert, now: i64, hint: &str) -> Check {
    let left = cert.not_after - now;
    let span = remaining(left);
    let warn_secs = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    if now < cert.not_before {
        Check::fail(
            id,
            title,
            format!(
                "{} is not valid before {}",
                cert.subject,
                date(cert.not_before)
            ),
            "check the clocks, or issue it again",
        )
    } else if left < 0 {
        Check::fail(
            id,
            title,
            format!("{} expired on {}", cert.subject, date(cert.not_after)),
            hint,
        )
    } else if left < warn_secs {
        Check::warn(
            id,
            title,
            format!(
                "{} expires on {} (in {span})",
                cert.subject,
                date(cert.not_after)
            ),
            hint,
        )
    } else {
        Check::pass(
            id,
            title,
            format!("until {} ({span} left)", date(cert.not_after)),
        )
    }
}

/// `secs` (positive) for people, rounded to the nearest unit so that two
/// runs a moment apart say the same: days from two days on, hours under two
/// days, minutes under two hours.
fn remaining(secs: i64) -> String {
    let round = |unit: i64| (secs + unit / 2) / unit;
    let (n, unit) = if secs >= 2 * 86_400 {
        (round(86_400), "day")
    } else if secs >= 2 * 3_600 {
        (round(3_600), "hour")
    } else {
        (round(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Whether a DNS name is covered by the SANs (exactly, or by a wildcard
/// for its first label), case-insensitively.
fn covers_dns(sans: &[String], want: &str) -> bool {
    let want = want.to_ascii_lowercase();
    sans.iter().any(|san| {
        let san = san.to_ascii_lowercase();
        if san == want {
            return true;
        }
        match (san.strip_prefix("*."), want.split_once('.')) {
            (Some(suffix), Some((_, rest))) => suffix == rest,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests;

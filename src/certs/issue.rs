//! Issuing: a new CA, and a serving certificate for the webhook Service
//! signed by it, each valid from a little before the clock passed in.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// What the serving certificate must cover.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// The Service's name.
    pub service: String,
    /// The Service's namespace.
    pub namespace: String,
    /// Extra DNS names.
    pub dns: Vec<String>,
    /// Extra IP addresses.
    pub ips: Vec<IpAddr>,
    /// Validity of both certificates.
    pub validity: Duration,
}

impl CertRequest {
    /// The names the API server may use for the Service, plus the extras.
    pub fn subject_alt_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service, &self.namespace);
        let mut names = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        names.extend(self.dns.iter().cloned());
        names.extend(self.ips.iter().map(IpAddr::to_string));
        names
    }
}

/// A CA and the serving certificate it signed, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The CA certificate (the webhook configuration's `caBundle`, base64).
    pub ca_cert_pem: String,
    /// The CA private key (keep it to re-issue; never in the cluster).
    pub ca_key_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// The serving private key (`tls.key`).
    pub key_pem: String,
}

/// Issues a new CA and serving certificate valid from `now`.
pub fn issue(req: &CertRequest, now: SystemTime) -> Result<Issued, rcgen::Error> {
    let (ca_cert, ca_key) = new_ca(req, now)?;
    let ca_not_before = validity(req, now).0;
    let (cert_pem, key_pem) = serving(req, now, ca_not_before, &ca_cert, &ca_key)?;
    Ok(Issued {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem,
        key_pem,
    })
}

/// Issues a new CA alone, valid from `now` for `req.validity`: (certificate
/// PEM, key PEM). The in-cluster rotation trusts it before it signs anything.
pub fn issue_ca(req: &CertRequest, now: SystemTime) -> Result<(String, String), rcgen::Error> {
    let (cert, key) = new_ca(req, now)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_ca(
    req: &CertRequest,
    now: SystemTime,
) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    // The second of issue in the name: two CAs of one namespace (an old and
    // a new one during a rotation) must not share a subject, or a client
    // could pick the wrong one to verify with.
    let issued = time::OffsetDateTime::from(now).unix_timestamp();
    ca.distinguished_name = name(&format!(
        "persistence-webhook CA ({}) {issued}",
        req.namespace
    ));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = validity(req, now);
    let ca_cert = ca.self_signed(&ca_key)?;
    Ok((ca_cert, ca_key))
}

/// From a little before `now` (five minutes, or a tenth of the validity if
/// that is shorter, for clocks slightly behind ours) to `now + validity`.
pub(super) fn validity(
    req: &CertRequest,
    now: SystemTime,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let backdate = Duration::from_secs(300).min(req.validity / 10);
    (
        time::OffsetDateTime::from(now - backdate),
        time::OffsetDateTime::from(now + req.validity),
    )
}

/// The same, for a certificate signed by a CA valid from `ca_not_before`:
/// never valid before its issuer is (a client checking the chain at that
/// moment would find the CA not yet valid).
fn validity_under(
    req: &CertRequest,
    now: SystemTime,
    ca_not_before: time::OffsetDateTime,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let (not_before, not_after) = validity(req, now);
    (not_before.max(ca_not_before), not_after)
}

/// The serving certificate and key, signed by the CA (whose validity starts
/// at `ca_not_before`).
pub(super) fn serving(
    req: &CertRequest,
    now: SystemTime,
    ca_not_before: time::OffsetDateTime,
    ca_cert: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(req.subject_alt_names())?;
    leaf.distinguished_name = name(&format!("{}.{}.svc", req.service, req.namespace));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (leaf.not_before, leaf.not_after) = validity_under(req, now, ca_not_before);
    let cert = leaf.signed_by(&key, ca_cert, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{ca_bundle, ca_bundle_patch, credentials};

    #[test]
    fn sans_cover_the_service_names_and_extras() {
        let req = CertRequest {
            service: "pw".into(),
            namespace: "sys".into(),
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            validity: Duration::from_secs(86400),
        };
        assert_eq!(
            req.subject_alt_names(),
            [
                "pw",
                "pw.sys",
                "pw.sys.svc",
                "pw.sys.svc.cluster.local",
                "localhost",
                "127.0.0.1"
            ]
        );
        let issued = issue(&req, SystemTime::now()).expect("issued");
        assert!(issued
            .ca_cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        assert_ne!(issued.ca_key_pem, issued.key_pem);
        let creds = credentials::load(
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            SystemTime::now(),
        )
        .expect("the issued pair loads as serving credentials");
        assert!(creds.not_after > 0);
        let patch = ca_bundle_patch(&issued.ca_cert_pem);
        assert!(
            patch.contains("path: /webhooks/0/clientConfig/caBundle"),
            "{patch}"
        );
        assert!(patch.contains(&ca_bundle(&issued.ca_cert_pem)));
    }
}

//! A CA and a serving certificate for the webhook Service, made with rcgen:
//! ECDSA P-256 keys (a P-256 handshake costs about half an RSA-2048 one, and
//! the API server never resumes TLS sessions). Used by `certs` and by the
//! server's demo mode. Takes the clock as an argument; writes no files.

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
    let not_before = time::OffsetDateTime::from(now - Duration::from_secs(300));
    let not_after = time::OffsetDateTime::from(now + req.validity);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = name(&format!("persistence-webhook CA ({})", req.namespace));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(req.subject_alt_names())?;
    leaf.distinguished_name = name(&format!("{}.{}.svc", req.service, req.namespace));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;

    Ok(Issued {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}

//! A CA and a serving certificate for the webhook Service, made with rcgen:
//! ECDSA P-256 keys (a P-256 handshake costs about half an RSA-2048 one, and
//! the API server never resumes TLS sessions). Used by `certs` and by the
//! server's demo mode. [`issue`] takes the clock as an argument and writes
//! nothing; [`run`] is the `certs` command that writes the files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cli::CertsArgs;

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

/// The webhook configuration's `caBundle`: the CA certificate PEM, base64.
pub fn ca_bundle(ca_cert_pem: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(ca_cert_pem)
}

/// A kustomize patch that sets `caBundle` on every webhook of the
/// `persistence-webhook` MutatingWebhookConfiguration.
pub fn ca_bundle_patch(ca_cert_pem: &str) -> String {
    format!(
        "# Written by `persistence-webhook certs`: the caBundle of the CA in this directory.\n\
         - op: add\n  path: /webhooks/0/clientConfig/caBundle\n  value: {}\n",
        ca_bundle(ca_cert_pem)
    )
}

/// What `certs` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The files, in writing order.
    pub files: Vec<PathBuf>,
    /// The caBundle.
    pub ca_bundle: String,
}

/// The `certs` command: issues and writes `ca.crt`, `ca.key`, `tls.crt`,
/// `tls.key` (keys mode 0600), `ca-bundle.b64` and `webhook-ca-bundle.yaml`.
/// Refuses to replace an existing CA unless `force`.
pub fn run(args: &CertsArgs) -> anyhow::Result<Written> {
    use anyhow::Context as _;
    let out = &args.out;
    for existing in ["ca.crt", "ca.key"].map(|f| out.join(f)) {
        if existing.exists() && !args.force {
            anyhow::bail!(
                "{} already exists: pass --force to replace the CA (then update every caBundle that trusts it), or choose another --out",
                existing.display()
            );
        }
    }
    let req = CertRequest {
        service: args.service.clone(),
        namespace: args.namespace.clone(),
        dns: args.dns.clone(),
        ips: args.ip.clone(),
        validity: *args.validity,
    };
    let issued = issue(&req, SystemTime::now()).context("issuing the certificates")?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create --out {}", out.display()))?;
    let bundle = ca_bundle(&issued.ca_cert_pem);
    let files = [
        ("ca.crt", issued.ca_cert_pem.as_str(), 0o644),
        ("ca.key", issued.ca_key_pem.as_str(), 0o600),
        ("tls.crt", issued.cert_pem.as_str(), 0o644),
        ("tls.key", issued.key_pem.as_str(), 0o600),
        ("ca-bundle.b64", &format!("{bundle}\n"), 0o644),
        (
            "webhook-ca-bundle.yaml",
            &ca_bundle_patch(&issued.ca_cert_pem),
            0o644,
        ),
    ];
    let mut written = Vec::new();
    for (name, content, mode) in files {
        let path = out.join(name);
        write_file(&path, content.as_bytes(), mode)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(Written {
        files: written,
        ca_bundle: bundle,
    })
}

/// Writes through a temporary file and a rename, created with `mode`, so a
/// reader never sees half a key and a key is never world-readable.
fn write_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
        let creds = crate::server::tls::load(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
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

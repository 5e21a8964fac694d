//! A CA and a serving certificate for the webhook Service, made with rcgen:
//! ECDSA P-256 keys (a P-256 handshake costs about half an RSA-2048 one, and
//! the API server never resumes TLS sessions). Used by `certs` and by the
//! server's demo mode. [`issue`] takes the clock as an argument and writes
//! nothing; [`run`] is the `certs` command that writes the files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;

pub mod credentials;
mod pair;

/// Flags of `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The webhook Service's name.
    #[arg(long, default_value = "persistence-webhook")]
    pub service: String,

    /// The webhook Service's namespace.
    #[arg(long, default_value = "persistence-webhook")]
    pub namespace: String,

    /// Extra DNS names for the serving certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,

    /// Extra IP addresses for the serving certificate (repeatable).
    #[arg(long, value_name = "IP")]
    pub ip: Vec<std::net::IpAddr>,

    /// How long both certificates are valid.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "365days",
        value_parser = crate::flags::human_duration
    )]
    pub validity: humantime::Duration,

    /// Where to write ca.crt, ca.key, tls.crt, tls.key, ca-bundle.b64 and
    /// webhook-ca-bundle.yaml (a kustomize patch).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out: PathBuf,

    /// Replace an existing CA in --out (every caBundle that trusts the old
    /// one must then be updated).
    #[arg(long, conflicts_with = "renew")]
    pub force: bool,

    /// Keep the CA in --out and issue a new serving certificate from it: the
    /// caBundle does not change, so rotation needs no webhook update.
    #[arg(long)]
    pub renew: bool,
}

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

/// Why [`renew`] issued nothing.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The CA's certificate or key could not be read or used.
    #[error("not a usable CA: {0}")]
    Ca(#[source] rcgen::Error),
    /// The CA's notAfter has passed: anything it signs is refused.
    #[error("the CA expired at {not_after} (now {now}): a certificate it signs would be refused. Run `certs --force` for a new CA, then update every caBundle that trusts the old one")]
    CaExpired {
        /// The CA's notAfter, RFC 3339.
        not_after: String,
        /// The time of the check, RFC 3339.
        now: String,
    },
    /// The CA's notBefore has not come yet.
    #[error("the CA is not valid before {not_before} (now {now}): check this host's clock, or run `certs --force` for a new CA, then update every caBundle that trusts the old one")]
    CaNotYetValid {
        /// The CA's notBefore, RFC 3339.
        not_before: String,
        /// The time of the check, RFC 3339.
        now: String,
    },
    /// Signing failed.
    #[error("cannot issue the serving certificate: {0}")]
    Issue(#[source] rcgen::Error),
}

/// A renewal: the certificates, and whether the CA's expiry cut it short.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The kept CA and the new serving certificate.
    pub issued: Issued,
    /// Set when the serving certificate ends with the CA, before `--validity`.
    pub capped: Option<Capped>,
}

/// A serving certificate cut short by its CA's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    /// The validity asked for.
    pub asked: Duration,
    /// The validity given: up to the CA's notAfter.
    pub granted: Duration,
    /// The CA's notAfter, RFC 3339.
    pub ca_not_after: String,
}

/// Below this, a capped certificate is "much shorter" whatever was asked:
/// less than a week leaves little time to notice and rotate.
const SHORT: Duration = Duration::from_secs(7 * 86400);

impl Capped {
    /// Under half the validity asked, or under a week: the CA needs
    /// replacing soon, which changes the caBundle.
    pub fn much_shorter(&self) -> bool {
        self.granted < self.asked / 2 || self.granted < SHORT
    }
}

impl std::fmt::Display for Capped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (granted, asked) = (days(self.granted), days(self.asked));
        if self.much_shorter() {
            write!(
                f,
                "warning: the new serving certificate is valid for only {granted} of the {asked} asked (--validity): it cannot outlive the CA, which expires at {}. Run `certs --force` soon for a new CA, then update every caBundle that trusts the old one",
                self.ca_not_after
            )
        } else {
            write!(
                f,
                "note: the new serving certificate is valid for {granted} of the {asked} asked (--validity): it ends with the CA, at {}",
                self.ca_not_after
            )
        }
    }
}

/// `d` in days (or hours, under a day), to one decimal.
fn days(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d >= Duration::from_secs(86400) {
        format!("{:.1} days", secs / 86400.0)
    } else {
        format!("{:.1} hours", secs / 3600.0)
    }
}

/// Issues a new serving certificate from an existing CA (PEM certificate and
/// key), so the caBundle that trusts it stays valid. Refuses a CA that is not
/// valid at `now`; caps the certificate at the CA's notAfter.
pub fn renew(
    req: &CertRequest,
    now: SystemTime,
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> Result<Renewed, RenewError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(RenewError::Ca)?;
    // Rebuilt from the CA's own fields and key: the issuer name and key
    // identifier in the new certificate are those of the CA on disk.
    let ca_params = CertificateParams::from_ca_cert_pem(ca_cert_pem).map_err(RenewError::Ca)?;
    let (ca_not_before, ca_not_after) = (ca_params.not_before, ca_params.not_after);
    let at = time::OffsetDateTime::from(now);
    // Signing under a CA outside its validity only writes a certificate
    // every client refuses (and exits 0, as if rotation had worked).
    if at > ca_not_after {
        return Err(RenewError::CaExpired {
            not_after: rfc3339(ca_not_after),
            now: rfc3339(at),
        });
    }
    if at < ca_not_before {
        return Err(RenewError::CaNotYetValid {
            not_before: rfc3339(ca_not_before),
            now: rfc3339(at),
        });
    }
    let ca_cert = ca_params.self_signed(&ca_key).map_err(RenewError::Ca)?;
    // A serving certificate must not outlive the CA that vouches for it.
    let mut capped = req.clone();
    let mut cut = None;
    if time::OffsetDateTime::from(now + req.validity) > ca_not_after {
        let left = (ca_not_after - at).whole_seconds().max(0);
        capped.validity = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        cut = Some(Capped {
            asked: req.validity,
            granted: capped.validity,
            ca_not_after: rfc3339(ca_not_after),
        });
    }
    let (cert_pem, key_pem) =
        serving(&capped, now, ca_not_before, &ca_cert, &ca_key).map_err(RenewError::Issue)?;
    Ok(Renewed {
        issued: Issued {
            ca_cert_pem: ca_cert_pem.to_owned(),
            ca_key_pem: ca_key_pem.to_owned(),
            cert_pem,
            key_pem,
        },
        capped: cut,
    })
}

/// `2026-11-23T07:17:49Z`. Written out by hand: humantime's formatter panics
/// before 1970 and after 9999, and a certificate may say either.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// From a little before `now` (five minutes, or a tenth of the validity if
/// that is shorter, for clocks slightly behind ours) to `now + validity`.
fn validity(req: &CertRequest, now: SystemTime) -> (time::OffsetDateTime, time::OffsetDateTime) {
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
fn serving(
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
    /// Lines for the operator (`warning: ...`, `note: ...`), for stderr.
    pub notes: Vec<String>,
}

/// The `certs` command: issues and writes `ca.crt`, `ca.key`, `tls.crt`,
/// `tls.key` (keys mode 0600), `ca-bundle.b64` and `webhook-ca-bundle.yaml`.
/// Refuses to replace an existing CA unless `force`; with `renew`, keeps the
/// CA and writes a new serving certificate signed by it.
pub fn run(args: &CertsArgs) -> anyhow::Result<Written> {
    use anyhow::Context as _;
    let out = &args.out;
    let req = CertRequest {
        service: args.service.clone(),
        namespace: args.namespace.clone(),
        dns: args.dns.clone(),
        ips: args.ip.clone(),
        validity: *args.validity,
    };
    let (ca_crt, ca_key) = (out.join("ca.crt"), out.join("ca.key"));
    let mut notes = Vec::new();
    let issued = if args.renew {
        // Through the operator-file reader: a FIFO, a device or a huge file
        // in place of the CA is refused at once, never waited on.
        let read = |p: &Path| {
            crate::file::read(p, crate::file::MAX_PEM_BYTES)
                .map_err(anyhow::Error::new)
                .and_then(|bytes| String::from_utf8(bytes).context("it is not UTF-8 text"))
                .with_context(|| {
                    format!(
                        "--renew needs the CA in --out, but cannot read {}",
                        p.display()
                    )
                })
        };
        let (cert, key) = (read(&ca_crt)?, read(&ca_key)?);
        let renewed = renew(&req, SystemTime::now(), &cert, &key).map_err(|e| match e {
            RenewError::CaExpired { .. } | RenewError::CaNotYetValid { .. } => {
                anyhow::anyhow!("--renew with {}: {e}", ca_crt.display())
            }
            RenewError::Ca(_) | RenewError::Issue(_) => anyhow::Error::new(e).context(format!(
                "--renew with {} / {}",
                ca_crt.display(),
                ca_key.display()
            )),
        })?;
        notes.extend(renewed.capped.as_ref().map(ToString::to_string));
        renewed.issued
    } else {
        for existing in [&ca_crt, &ca_key] {
            if existing.exists() && !args.force {
                anyhow::bail!(
                    "{} already exists: pass --renew to issue a new serving certificate from that CA (the caBundle stays the same), --force to replace the CA (then update every caBundle that trusts it), or choose another --out",
                    existing.display()
                );
            }
        }
        issue(&req, SystemTime::now()).context("issuing the certificates")?
    };
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
    let written = pair::publish(out, &files)
        .with_context(|| format!("cannot write the certificates into {}", out.display()))?;
    Ok(Written {
        files: written,
        ca_bundle: bundle,
        notes,
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

    fn args_in(out: &Path, renew: bool) -> CertsArgs {
        CertsArgs {
            service: "pw".into(),
            namespace: "sys".into(),
            dns: vec![],
            ip: vec![],
            validity: Duration::from_secs(86400).into(),
            out: out.to_owned(),
            force: false,
            renew,
        }
    }

    /// `certs --renew` reads the CA through the operator-file reader: a FIFO
    /// in place of `ca.key` is refused, saying what it is, instead of
    /// waiting forever for a writer.
    #[test]
    fn renew_refuses_a_fifo_in_place_of_the_ca_without_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(&args_in(dir.path(), false)).expect("first issue");
        let key = dir.path().join("ca.key");
        std::fs::remove_file(&key).expect("the key link is removed");
        let made = std::process::Command::new("mkfifo")
            .arg(&key)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let out = dir.path().to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(run(&args_in(&out, true)).map(|_| ()));
        });
        // Generous: the refusal is immediate; only a blocked open takes long.
        let err = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("--renew returned instead of waiting on the FIFO")
            .expect_err("a FIFO is not a CA key");
        let text = format!("{err:#}");
        assert!(text.contains("FIFO"), "{text}");
        assert!(text.contains("ca.key"), "{text}");
    }

    /// A reader polling `tls.crt` and `tls.key` while `certs --renew` runs
    /// again and again never finds a key that does not match the
    /// certificate: when the certificate read before and after the key is
    /// the same, the key is that certificate's.
    #[test]
    fn a_polling_reader_never_sees_a_key_from_another_certificate() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        run(&args_in(dir.path(), false)).expect("first issue");
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (done, out) = (done.clone(), dir.path().to_owned());
            std::thread::spawn(move || {
                let (mut compared, mut mismatched) = (0u32, 0u32);
                while !done.load(Ordering::Relaxed) {
                    let read = |f: &str| std::fs::read_to_string(out.join(f));
                    let (Ok(before), Ok(key), Ok(after)) =
                        (read("tls.crt"), read("tls.key"), read("tls.crt"))
                    else {
                        mismatched += 1; // a name must never be missing
                        continue;
                    };
                    if before != after {
                        continue; // a renewal fell between the reads
                    }
                    compared += 1;
                    let key = KeyPair::from_pem(&key).expect("the key parses");
                    let (_, pem) =
                        x509_parser::pem::parse_x509_pem(before.as_bytes()).expect("PEM");
                    let cert = pem.parse_x509().expect("X.509");
                    if cert.public_key().raw != key.public_key_der().as_slice() {
                        mismatched += 1;
                    }
                }
                (compared, mismatched)
            })
        };
        for _ in 0..40 {
            run(&args_in(dir.path(), true)).expect("renew");
        }
        done.store(true, Ordering::Relaxed);
        let (compared, mismatched) = reader.join().expect("the reader ends");
        assert!(compared > 0, "the reader compared no pair");
        assert_eq!(mismatched, 0, "pairs that did not match (of {compared})");
    }

    #[test]
    fn renew_keeps_the_ca_and_signs_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = |renew: bool, force: bool| CertsArgs {
            service: "pw".into(),
            namespace: "sys".into(),
            dns: vec![],
            ip: vec![],
            validity: Duration::from_secs(86400).into(),
            out: dir.path().to_owned(),
            force,
            renew,
        };
        run(&args(false, false)).expect("first issue");
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("file");
        let (ca1, tls1, bundle1) = (read("ca.crt"), read("tls.crt"), read("ca-bundle.b64"));
        let err = run(&args(false, false)).expect_err("an existing CA is not replaced");
        assert!(err.to_string().contains("--renew"), "{err}");
        run(&args(true, false)).expect("renew");
        assert_eq!(read("ca.crt"), ca1, "the CA is kept");
        assert_eq!(read("ca-bundle.b64"), bundle1, "the caBundle is unchanged");
        let tls2 = read("tls.crt");
        assert_ne!(tls2, tls1, "a new serving certificate");
        // The new certificate verifies against the CA on disk.
        let der = |pem: &str| {
            use rustls::pki_types::pem::PemObject as _;
            rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .next()
                .expect("a cert")
                .expect("PEM")
        };
        let (ca_der, leaf_der) = (der(&ca1), der(&tls2));
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA");
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        leaf.verify_signature(Some(ca.public_key()))
            .expect("signed by the kept CA");
        assert_eq!(leaf.issuer(), ca.subject());
        let mode = |f: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("tls.key"), mode("ca.key")), (0o600, 0o600));
        // A renewal never outlives the CA.
        let long = CertsArgs {
            validity: Duration::from_secs(10 * 86400).into(),
            ..args(true, false)
        };
        run(&long).expect("renew for longer than the CA");
        let tls3 = read("tls.crt");
        let leaf_der = der(&tls3);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        assert!(
            leaf.validity().not_after.timestamp() <= ca.validity().not_after.timestamp(),
            "the serving certificate outlives its CA"
        );
        std::fs::remove_file(dir.path().join("ca.key")).expect("rm");
        let err = run(&args(true, false)).expect_err("renew needs the CA key");
        assert!(format!("{err:#}").contains("ca.key"), "{err:#}");
    }

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

    #[test]
    fn dates_are_rfc3339_even_far_from_now() {
        let cases = [
            (time::OffsetDateTime::UNIX_EPOCH, "1970-01-01T00:00:00Z"),
            (
                time::OffsetDateTime::UNIX_EPOCH - time::Duration::days(1),
                "1969-12-31T00:00:00Z",
            ),
            (
                time::OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("9999"),
                "9999-12-31T23:59:59Z",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(rfc3339(t), want);
        }
    }

    fn request(validity_days: u64) -> CertRequest {
        CertRequest {
            service: "pw".into(),
            namespace: "sys".into(),
            dns: vec![],
            ips: vec![],
            validity: Duration::from_secs(validity_days * 86400),
        }
    }

    #[test]
    fn renew_refuses_a_ca_outside_its_validity() {
        const DAY: Duration = Duration::from_secs(86400);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        // Valid one day from 2026-11-21T11:55:00Z; then one from 2026-11-25.
        let expired = issue(&request(1), now - 2 * DAY).expect("CA");
        let future = issue(&request(1), now + 2 * DAY).expect("CA");
        let cases = [
            (
                &expired,
                "the CA expired at 2026-11-22T12:00:00Z (now 2026-11-23T12:00:00Z)",
            ),
            (
                &future,
                "the CA is not valid before 2026-11-25T11:55:00Z (now 2026-11-23T12:00:00Z)",
            ),
        ];
        for (ca, want) in cases {
            let err = renew(&request(30), now, &ca.ca_cert_pem, &ca.ca_key_pem)
                .expect_err(want)
                .to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.contains("`certs --force`"), "{err}");
        }
    }

    /// A renewal right after the CA was made would backdate the serving
    /// certificate (five minutes, or a tenth of its validity) to before the
    /// CA's own notBefore: the chain would then have a moment in which the
    /// leaf is valid and its issuer is not. The leaf starts with its CA.
    #[test]
    fn a_renewed_certificate_never_starts_before_its_ca() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        // The CA is backdated by 5 minutes from `now`; renewing 1 minute
        // later would backdate the leaf to 4 minutes before the CA.
        let ca = issue(&request(30), now).expect("CA");
        let ca_start = CertificateParams::from_ca_cert_pem(&ca.ca_cert_pem)
            .expect("the CA parses")
            .not_before;
        for later in [0, 60, 299, 301, 3600] {
            let at = now + Duration::from_secs(later);
            let renewed =
                renew(&request(30), at, &ca.ca_cert_pem, &ca.ca_key_pem).expect("renewed");
            let (_, leaf) =
                x509_parser::pem::parse_x509_pem(renewed.issued.cert_pem.as_bytes()).expect("PEM");
            let leaf = leaf.parse_x509().expect("X.509");
            let start = leaf.validity().not_before.timestamp();
            assert!(
                start >= ca_start.unix_timestamp(),
                "{later} s after the CA: the leaf starts at {start}, the CA at {}",
                ca_start.unix_timestamp()
            );
            let backdated = time::OffsetDateTime::from(at - Duration::from_secs(300));
            assert_eq!(
                start,
                backdated.max(ca_start).unix_timestamp(),
                "{later} s after the CA: backdated five minutes, but not before the CA"
            );
        }
    }

    #[test]
    fn renew_under_a_ca_ending_soon_says_how_short_the_certificate_is() {
        let now = SystemTime::now();
        let ca = issue(&request(10), now).expect("CA");
        // (asked, capped?, much shorter?)
        let cases = [(5, false, false), (15, true, false), (30, true, true)];
        for (asked, capped, much) in cases {
            let renewed =
                renew(&request(asked), now, &ca.ca_cert_pem, &ca.ca_key_pem).expect("renewed");
            assert_eq!(renewed.capped.is_some(), capped, "{asked} days");
            if let Some(cut) = renewed.capped {
                assert_eq!(cut.much_shorter(), much, "{asked} days: {cut}");
                let text = cut.to_string();
                let want = if much { "warning: " } else { "note: " };
                assert!(text.starts_with(want), "{text}");
                assert!(
                    text.contains(&format!("of the {asked}.0 days asked")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn much_shorter_is_under_half_or_under_a_week() {
        const DAY: u64 = 86400;
        let cut = |asked: u64, granted: u64| Capped {
            asked: Duration::from_secs(asked * DAY),
            granted: Duration::from_secs(granted * DAY),
            ca_not_after: String::new(),
        };
        let cases = [
            (365, 300, false, "most of a year"),
            (365, 180, true, "under half"),
            (10, 6, true, "under a week though over half"),
            (10, 7, false, "a week, over half"),
        ];
        for (asked, granted, want, why) in cases {
            assert_eq!(cut(asked, granted).much_shorter(), want, "{why}");
        }
    }
}

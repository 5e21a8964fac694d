//! The `certs` command: issue (or, with `--renew`, renew from the CA in
//! `--out`), then write the files through `pair`, and the caBundle forms
//! it prints and writes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::args::CertsArgs;
use super::issue::{issue, CertRequest};
use super::renew::{renew, RenewError};
use super::{ca_bundle, pair};

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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;
    use std::time::Duration;

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
}

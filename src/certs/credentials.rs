//! Serving credentials: a PEM certificate chain and key parsed and checked
//! (the key matches the leaf, the leaf is valid at the time the caller
//! passes in), ready for rustls. Both ways a certificate reaches the server
//! load through [`load`]: the files (`--tls-cert`, `--demo`) and the
//! in-cluster Secret.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::rfc3339;

/// Why a certificate/key pair was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate file holds no PEM `CERTIFICATE` block, or a broken one.
    #[error("the certificate file holds no valid PEM CERTIFICATE block ({0})")]
    Cert(String),
    /// The key file holds no usable private key.
    #[error("the key file holds no usable PEM private key ({0})")]
    Key(String),
    /// Cert and key do not belong together.
    #[error("the private key does not match the certificate")]
    Mismatch,
    /// The key's public half could not be compared with the certificate's.
    #[error("cannot tell whether the private key matches the certificate ({0})")]
    Unmatched(String),
    /// The leaf certificate could not be read as X.509.
    #[error("the certificate is not valid X.509: {0}")]
    X509(String),
    /// The leaf's notAfter has passed: clients would refuse it.
    #[error("the certificate expired at {} (valid {} to {}; now {}): serve a renewed one", .0.not_after, .0.not_before, .0.not_after, .0.now)]
    Expired(Window),
    /// The leaf's notBefore has not come yet: clients would refuse it.
    #[error("the certificate is not valid before {} (valid {} to {}; now {}): check this host's clock, or wait", .0.not_before, .0.not_before, .0.not_after, .0.now)]
    NotYetValid(Window),
}

impl TlsError {
    /// Which of `--tls-cert` and `--tls-key` holds the problem.
    pub fn file(&self) -> Culprit {
        match self {
            TlsError::Key(_) => Culprit::Key,
            TlsError::Mismatch | TlsError::Unmatched(_) => Culprit::Both,
            TlsError::Cert(_)
            | TlsError::X509(_)
            | TlsError::Expired(_)
            | TlsError::NotYetValid(_) => Culprit::Cert,
        }
    }
}

/// The file (or pair) a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
    /// Each is fine alone; together they are not.
    Both,
}

/// A certificate's validity and the time it was checked at, as RFC 3339
/// UTC, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// notBefore.
    pub not_before: String,
    /// notAfter.
    pub not_after: String,
    /// The time of the check.
    pub now: String,
}

/// A loaded, checked pair.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The leaf's notAfter, as a unix timestamp.
    pub not_after: i64,
}

/// The crypto provider for every TLS config in the process.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses and checks a PEM chain and key: the leaf (the first certificate)
/// must be valid at `now` and match the key. The rest of the chain is served
/// as given; the client judges it.
pub fn load(cert_pem: &[u8], key_pem: &[u8], now: SystemTime) -> Result<Credentials, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Cert("none found".into()));
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::X509(e.to_string()))?;
    let validity = parsed.validity();
    let (not_before, not_after) = (validity.not_before, validity.not_after);
    let at = time::OffsetDateTime::from(now);
    // X.509 validity includes both ends; compared to the second, as the
    // certificate states it.
    let window = || Window {
        not_before: rfc3339(not_before.to_datetime()),
        not_after: rfc3339(not_after.to_datetime()),
        now: rfc3339(at),
    };
    let secs = at.unix_timestamp();
    if secs < not_before.timestamp() {
        return Err(TlsError::NotYetValid(window()));
    }
    if secs > not_after.timestamp() {
        return Err(TlsError::Expired(window()));
    }
    let not_after = not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::Mismatch
        }
        // The leaf parsed as X.509 above, but webpki may still refuse it.
        other => TlsError::Unmatched(other.to_string()),
    })?;
    Ok(Credentials {
        key: Arc::new(certified),
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{issue, CertRequest};
    use std::time::{Duration, SystemTime};

    const HOUR: Duration = Duration::from_secs(3600);

    fn pair() -> crate::certs::Issued {
        pair_at(SystemTime::now())
    }

    /// Valid from 5 minutes before `at` to an hour after.
    fn pair_at(at: SystemTime) -> crate::certs::Issued {
        let req = CertRequest {
            service: "s".into(),
            namespace: "n".into(),
            dns: vec![],
            ips: vec![],
            validity: HOUR,
        };
        issue(&req, at).expect("issued")
    }

    #[test]
    fn loads_a_chain_and_reads_expiry() {
        let p = pair();
        let chain = format!("{}{}", p.cert_pem, p.ca_cert_pem);
        let creds = load(chain.as_bytes(), p.key_pem.as_bytes(), SystemTime::now()).expect("loads");
        assert_eq!(creds.key.cert.len(), 2);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!(
            (creds.not_after - now - 3600).abs() < 60,
            "{}",
            creds.not_after - now
        );
    }

    #[test]
    fn refuses_bad_pairs() {
        let (a, b) = (pair(), pair());
        let cases = [
            (
                b"".as_slice(),
                a.key_pem.as_bytes(),
                "no valid PEM CERTIFICATE",
            ),
            (
                a.cert_pem.as_bytes(),
                b"".as_slice(),
                "no usable PEM private key",
            ),
            (
                a.cert_pem.as_bytes(),
                b.key_pem.as_bytes(),
                "does not match",
            ),
            (
                a.key_pem.as_bytes(),
                a.key_pem.as_bytes(),
                "no valid PEM CERTIFICATE",
            ),
        ];
        for (cert, key, want) in cases {
            let err = load(cert, key, SystemTime::now())
                .expect_err(want)
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn refuses_a_leaf_outside_its_validity_saying_when() {
        // Issued at 2026-11-23T12:00:00Z: valid 11:55:00 to 13:00:00.
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        let p = pair_at(issued);
        let at = |secs: i64| {
            let d = Duration::from_secs(secs.unsigned_abs());
            if secs < 0 {
                issued - d
            } else {
                issued + d
            }
        };
        let cases = [
            (at(-301), Some("not valid before 2026-11-23T11:55:00Z (valid 2026-11-23T11:55:00Z to 2026-11-23T13:00:00Z; now 2026-11-23T11:54:59Z)")),
            (at(-300), None),
            (at(3600), None),
            (at(3601), Some("the certificate expired at 2026-11-23T13:00:00Z (valid 2026-11-23T11:55:00Z to 2026-11-23T13:00:00Z; now 2026-11-23T13:00:01Z)")),
        ];
        for (now, want) in cases {
            let got = load(p.cert_pem.as_bytes(), p.key_pem.as_bytes(), now);
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => {
                    assert!(e.to_string().contains(want), "{e}");
                    assert_eq!(e.file(), Culprit::Cert);
                }
                (got, want) => panic!("{now:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}

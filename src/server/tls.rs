//! Serving credentials: PEM cert chain and key parsed and checked to match,
//! held behind an atomically swappable handle that rustls consults on every
//! handshake, so a rotated certificate is served without a restart and
//! without touching connections already open.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

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
    /// The leaf certificate could not be read as X.509.
    #[error("the certificate is not valid X.509: {0}")]
    X509(String),
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

/// Parses and checks a PEM chain and key.
pub fn load(cert_pem: &[u8], key_pem: &[u8]) -> Result<Credentials, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Cert("none found".into()));
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::X509(e.to_string()))?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch)?;
    Ok(Credentials {
        key: Arc::new(certified),
        not_after,
    })
}

/// Hands rustls whichever credentials are current.
#[derive(Debug)]
pub struct Resolver(ArcSwap<CertifiedKey>);

impl Resolver {
    /// Starts with `initial`.
    pub fn new(initial: Arc<CertifiedKey>) -> Resolver {
        Resolver(ArcSwap::new(initial))
    }

    /// Serves `key` from the next handshake on.
    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.0.store(key);
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN, certificates from `resolver`.
pub fn server_config(resolver: Arc<Resolver>) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{issue, CertRequest};
    use std::time::{Duration, SystemTime};

    fn pair() -> crate::certs::Issued {
        let req = CertRequest {
            service: "s".into(),
            namespace: "n".into(),
            dns: vec![],
            ips: vec![],
            validity: Duration::from_secs(3600),
        };
        issue(&req, SystemTime::now()).expect("issued")
    }

    #[test]
    fn loads_a_chain_and_reads_expiry() {
        let p = pair();
        let chain = format!("{}{}", p.cert_pem, p.ca_cert_pem);
        let creds = load(chain.as_bytes(), p.key_pem.as_bytes()).expect("loads");
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
            let err = load(cert, key).expect_err(want).to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}

//! The serving credentials (loaded and checked by
//! [`crate::certs::credentials`]) held behind an atomically swappable handle
//! that rustls consults on every handshake, so a rotated certificate is
//! served without a restart and without touching connections already open.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::certs::credentials::provider;

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

    /// What the next handshake is served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.load_full()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
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

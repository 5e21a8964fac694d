//! The in-cluster certificate loop's metrics (`serve --certificates
//! in-cluster` only: in file mode the CA is not the server's to watch):
//! renewals, failed steps, caBundle writes, the CA's expiry and who holds
//! the Lease. `serve` registers them into the process's one registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// The in-cluster certificates' metrics.
#[derive(Debug, Clone, Default)]
pub struct CertificateMetrics {
    renewals: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    /// Writes of the caBundle into the webhook configuration (first fill,
    /// rotations and restores after an overwrite).
    pub ca_bundle_writes: Counter,
    /// notAfter of the CA that signs the serving certificate (unix seconds).
    pub ca_expiry: Gauge,
    /// 1 while this replica holds the Lease and writes the certificates.
    pub leader: Gauge,
}

impl CertificateMetrics {
    /// The `kind` labels of renewals.
    pub const RENEWALS: [&'static str; 7] = [
        "created",
        "serving",
        "ca-trust",
        "ca-switch",
        "ca-drop",
        "replace",
        "stopgap",
    ];
    /// The `step` labels of failures.
    pub const FAILURES: [&'static str; 5] = ["secret", "issue", "load", "ca-bundle", "lease"];

    /// Counts a renewal (a write of the Secret) of `kind`.
    pub fn renewed(&self, kind: &'static str) {
        self.renewals.get_or_create(&[("kind", kind)]).inc();
    }

    /// Counts a failed `step`.
    pub fn failed(&self, step: &'static str) {
        self.failures.get_or_create(&[("step", step)]).inc();
    }

    /// Registers them into `registry` (the process's one registry, whose
    /// prefix they take).
    pub fn register(&self, registry: &mut Registry) {
        for kind in Self::RENEWALS {
            let _ = self.renewals.get_or_create(&[("kind", kind)]);
        }
        for step in Self::FAILURES {
            let _ = self.failures.get_or_create(&[("step", step)]);
        }
        registry.register(
            "certificate_renewals",
            format!(
                "Writes of the certificate Secret by this replica, by kind ({}; stopgap: a serving certificate of its own, not written, when the Secret held nothing fresher near the end of the one served)",
                Self::RENEWALS.join(", ")
            ),
            self.renewals.clone(),
        );
        registry.register(
            "certificate_failures",
            format!(
                "Failed certificate steps, by step ({}); each is retried with backoff",
                Self::FAILURES.join(", ")
            ),
            self.failures.clone(),
        );
        registry.register(
            "ca_bundle_writes",
            "Writes of the caBundle into the MutatingWebhookConfiguration (fills, rotations, restores)",
            self.ca_bundle_writes.clone(),
        );
        registry.register(
            "ca_expiry_timestamp_seconds",
            "notAfter of the CA that signs the serving certificate, as a unix timestamp",
            self.ca_expiry.clone(),
        );
        registry.register(
            "certificate_leader",
            "1 while this replica holds the Lease and writes the certificates",
            self.leader.clone(),
        );
    }
}

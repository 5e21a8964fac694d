//! Prometheus metrics. Every counter a request touches is created up front,
//! so the hot path increments an atomic and takes no lock.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Review outcomes, as labelled in `persistence_webhook_reviews_total`.
pub const OUTCOMES: [&str; 4] = ["patched", "unchanged", "denied", "invalid"];

/// What is reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The persistence config.
    Config,
    /// The serving certificate and key.
    Certificate,
}

impl Reloaded {
    fn label(self) -> &'static str {
        match self {
            Reloaded::Config => "config",
            Reloaded::Certificate => "certificate",
        }
    }
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reviews: [Counter; 4],
    latency: Histogram,
    reloads: Family<Labels2, Counter>,
    /// The serving certificate's notAfter (unix seconds).
    pub cert_expiry: Gauge,
    /// Increments each time a new config is taken into use (1 at start).
    pub config_generation: Gauge,
    /// Reviews being read or computed right now.
    pub in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("persistence_webhook");
        let by_outcome = Family::<Labels, Counter>::default();
        let reviews = OUTCOMES.map(|o| by_outcome.get_or_create(&[("outcome", o)]).clone());
        registry.register(
            "reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, invalid)",
            by_outcome,
        );
        let latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register(
            "review_duration_seconds",
            "Time from a complete request body to the answer, per review",
            latency.clone(),
        );
        let reloads = Family::<Labels2, Counter>::default();
        for kind in [Reloaded::Config, Reloaded::Certificate] {
            for result in ["success", "failure"] {
                let _ = reloads.get_or_create(&[("kind", kind.label()), ("result", result)]);
            }
        }
        registry.register(
            "reloads",
            "Reloads of the config and the certificate, by result; a failure keeps the last good one",
            reloads.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a unix timestamp",
            cert_expiry.clone(),
        );
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the persistence config in use: 1 at start, +1 per successful reload",
            config_generation.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reviews_in_flight",
            "Reviews being received or computed right now (waiting ones included)",
            in_flight.clone(),
        );
        Metrics {
            in_flight,
            registry,
            reviews,
            latency,
            reloads,
            cert_expiry,
            config_generation,
        }
    }

    /// Counts one answered review.
    pub fn review(&self, outcome: &str, seconds: f64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.reviews[i].inc();
        }
        self.latency.observe(seconds);
    }

    /// Counts one reload attempt.
    pub fn reload(&self, what: Reloaded, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&[("kind", what.label()), ("result", result)])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::new();
        m.review("patched", 0.0001);
        m.review("denied", 0.0001);
        m.reload(Reloaded::Config, false);
        m.cert_expiry.set(1_900_000_000);
        m.config_generation.set(3);
        let text = m.render();
        for line in [
            "persistence_webhook_reviews_total{outcome=\"patched\"} 1",
            "persistence_webhook_reviews_total{outcome=\"denied\"} 1",
            "persistence_webhook_reviews_total{outcome=\"invalid\"} 0",
            "persistence_webhook_review_duration_seconds_count 2",
            "persistence_webhook_reloads_total{kind=\"config\",result=\"failure\"} 1",
            "persistence_webhook_reloads_total{kind=\"certificate\",result=\"success\"} 0",
            "persistence_webhook_certificate_expiry_timestamp_seconds 1900000000",
            "persistence_webhook_config_generation 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}

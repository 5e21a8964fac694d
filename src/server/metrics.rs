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

use crate::review::{Outcome, Reason};

/// Bucket bounds of `request_duration_seconds`: fine below a second, and
/// 5 s (the alert's threshold, half the manifests' `timeoutSeconds: 10`),
/// 8 s (`--request-timeout`) and 10 s as bounds of their own, so "more than
/// 1 % of requests took over 5 s" is exact, not interpolated.
pub const REQUEST_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 10.0,
];

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

/// The two listening ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The HTTPS webhook port (`--addr`).
    Webhook,
    /// The plain-HTTP metrics and probes port (`--metrics-addr`).
    Metrics,
}

impl Port {
    /// Both ports, for counters created up front.
    pub const ALL: [Port; 2] = [Port::Webhook, Port::Metrics];

    /// The `port` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Port::Webhook => "webhook",
            Port::Metrics => "metrics",
        }
    }
}

/// Why the server closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No complete handshake and request headers within `--header-read-timeout`.
    HeaderTimeout,
    /// No request in progress for `--idle-timeout`.
    Idle,
    /// The TLS handshake failed.
    Handshake,
    /// An answer not yet taken by its client when its review's deadline
    /// passed: the connection is closed, which frees the answer and its
    /// review slot.
    AnswerTimeout,
    /// A connection borrowed past its peer's share, taken back for a peer
    /// within its own (closed gracefully: a request in progress is
    /// answered first).
    Reclaimed,
}

impl Closed {
    /// Every reason, for counters created up front.
    pub const ALL: [Closed; 5] = [
        Closed::HeaderTimeout,
        Closed::Idle,
        Closed::Handshake,
        Closed::AnswerTimeout,
        Closed::Reclaimed,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header-timeout",
            Closed::Idle => "idle",
            Closed::Handshake => "handshake-failed",
            Closed::AnswerTimeout => "answer-timeout",
            Closed::Reclaimed => "reclaimed",
        }
    }
}

/// Why a connection was refused right after it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its peer (source address) already held its share of connections
    /// (`--max-connections-per-peer`).
    PeerShare,
}

impl Refused {
    /// Every reason, for counters created up front.
    pub const ALL: [Refused; 1] = [Refused::PeerShare];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::PeerShare => "peer-share",
        }
    }
}

/// Which budget had no room for a body before its deadline (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefused {
    /// The budget every peer shares (`--max-body-buffer-bytes`).
    Budget,
    /// The peer's own share of it (`--max-connections-per-peer`).
    PeerShare,
}

impl BodyRefused {
    /// Every reason, for counters created up front.
    pub const ALL: [BodyRefused; 2] = [BodyRefused::Budget, BodyRefused::PeerShare];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyRefused::Budget => "budget",
            BodyRefused::PeerShare => "peer-share",
        }
    }
}

/// Where a review ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// Receiving the body.
    Body,
    /// Waiting for a review slot (`--max-in-flight`).
    Slot,
    /// Waiting for one of the client's own review slots (its share of
    /// `--max-in-flight`, all held by its other reviews or answers).
    PeerSlot,
    /// Computing the answer.
    Review,
}

impl TimedOut {
    /// Every phase, for counters created up front.
    pub const ALL: [TimedOut; 4] = [
        TimedOut::Body,
        TimedOut::Slot,
        TimedOut::PeerSlot,
        TimedOut::Review,
    ];

    /// The `phase` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TimedOut::Body => "body",
            TimedOut::Slot => "slot",
            TimedOut::PeerSlot => "peer-slot",
            TimedOut::Review => "review",
        }
    }
}

/// Decrements the open-connections gauge when the connection ends.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reviews: Reviews,
    reloads: Reloads,
    /// The serving certificate's notAfter (unix seconds).
    pub cert_expiry: Gauge,
    /// Increments each time a new config is taken into use (1 at start).
    pub config_generation: Gauge,
    /// Reviews being read or computed right now.
    pub in_flight: Gauge,
    /// Review slots taken (at most `--max-in-flight`).
    pub slots_in_use: Gauge,
    /// `--max-in-flight`: how many review slots there are.
    pub slots_limit: Gauge,
    /// Request body bytes held right now (at most `--max-body-buffer-bytes`).
    pub body_buffer_bytes: Gauge,
    connections: Connections,
    overload: Overload,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a gauge.
fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

/// The answers: how many, by outcome and reason, and how long they took.
#[derive(Debug)]
struct Reviews {
    /// `reviews_total{outcome="patched",reason=""}`.
    patched: Counter,
    /// `reviews_total{outcome=...,reason=...}`, indexed by `Reason as usize`.
    by_reason: [Counter; Reason::ALL.len()],
    latency: Histogram,
    request_latency: Histogram,
}

impl Reviews {
    fn register(registry: &mut Registry) -> Reviews {
        // Every (outcome, reason) pair up front: a bounded set (the reasons'
        // stable names, "" for patched), and no lock on the hot path.
        let by_outcome = Family::<Labels2, Counter>::default();
        let patched = by_outcome
            .get_or_create(&[("outcome", Outcome::Patched.as_str()), ("reason", "")])
            .clone();
        let by_reason = Reason::ALL.map(|r| {
            by_outcome
                .get_or_create(&[("outcome", r.outcome().as_str()), ("reason", r.as_str())])
                .clone()
        });
        registry.register(
            "reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, invalid) and reason (the stable name of the skip or refusal, empty when patched)",
            by_outcome,
        );
        let latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register(
            "review_duration_seconds",
            "Time from a complete request body to the answer, per review",
            latency.clone(),
        );
        let request_latency = Histogram::new(REQUEST_BUCKETS.iter().copied());
        registry.register(
            "request_duration_seconds",
            "Time from a POST /mutate request's headers to its answer: the body, the wait for a slot and the review, timeouts included",
            request_latency.clone(),
        );
        Reviews {
            patched,
            by_reason,
            latency,
            request_latency,
        }
    }
}

/// Reloads of the config and the certificate, and whether the latest took.
#[derive(Debug)]
struct Reloads {
    reloads: Family<Labels2, Counter>,
    /// `last_reload_successful{kind}`: 0 while the latest version of the
    /// files was refused, else 1.
    reload_ok: Family<Labels, Gauge>,
}

impl Reloads {
    fn register(registry: &mut Registry) -> Reloads {
        let reloads = Family::<Labels2, Counter>::default();
        let reload_ok = Family::<Labels, Gauge>::default();
        for kind in [Reloaded::Config, Reloaded::Certificate] {
            for result in ["success", "failure"] {
                let _ = reloads.get_or_create(&[("kind", kind.label()), ("result", result)]);
            }
            reload_ok.get_or_create(&[("kind", kind.label())]).set(1);
        }
        registry.register(
            "reloads",
            "Reloads of the config and the certificate, by result; a failure keeps the last good one",
            reloads.clone(),
        );
        registry.register(
            "last_reload_successful",
            "0 while the latest version of the files (config or certificate) was refused and the last good one still serves, else 1",
            reload_ok.clone(),
        );
        Reloads { reloads, reload_ok }
    }
}

/// The connections of both ports: open, waiting for room, closed and
/// refused by the server.
#[derive(Debug)]
struct Connections {
    open: Family<Labels, Gauge>,
    limited: Family<Labels, Counter>,
    closed: Family<Labels2, Counter>,
    refused: Family<Labels2, Counter>,
}

impl Connections {
    fn register(registry: &mut Registry) -> Connections {
        let open = Family::<Labels, Gauge>::default();
        let limited = Family::<Labels, Counter>::default();
        let closed = Family::<Labels2, Counter>::default();
        let refused = Family::<Labels2, Counter>::default();
        for port in Port::ALL {
            let p = port.as_str();
            let _ = open.get_or_create(&[("port", p)]);
            let _ = limited.get_or_create(&[("port", p)]);
            for why in Closed::ALL {
                let _ = closed.get_or_create(&[("port", p), ("reason", why.as_str())]);
            }
            for why in Refused::ALL {
                let _ = refused.get_or_create(&[("port", p), ("reason", why.as_str())]);
            }
        }
        registry.register(
            "connections_open",
            "Open connections, by port",
            open.clone(),
        );
        registry.register(
            "connections_limited",
            "Times the accept loop found --max-connections open and made new connections wait, by port",
            limited.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the server closed itself, by port and reason (header-timeout, idle, handshake-failed)",
            closed.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed right after accept, before the TLS handshake, by port and reason (peer-share: the source address already held --max-connections-per-peer); never by address",
            refused.clone(),
        );
        Connections {
            open,
            limited,
            closed,
            refused,
        }
    }
}

/// Work turned away or failed under load: bodies without room, failed
/// accepts, reviews out of time.
#[derive(Debug)]
struct Overload {
    bodies_refused: Family<Labels, Counter>,
    accept_errors: Family<Labels2, Counter>,
    timeouts: Family<Labels, Counter>,
}

impl Overload {
    fn register(registry: &mut Registry) -> Overload {
        let bodies_refused = Family::<Labels, Counter>::default();
        for why in BodyRefused::ALL {
            let _ = bodies_refused.get_or_create(&[("reason", why.as_str())]);
        }
        registry.register(
            "bodies_refused",
            "Request bodies answered 503 for want of room before their deadline, by reason (budget: --max-body-buffer-bytes; peer-share: the client's own share of it)",
            bodies_refused.clone(),
        );
        let accept_errors = Family::<Labels2, Counter>::default();
        for port in Port::ALL {
            for kind in ["descriptors", "other"] {
                let _ = accept_errors.get_or_create(&[("port", port.as_str()), ("kind", kind)]);
            }
        }
        registry.register(
            "accept_errors",
            "Failed accepts, by port and kind (descriptors: out of file descriptors)",
            accept_errors.clone(),
        );
        let timeouts = Family::<Labels, Counter>::default();
        for phase in TimedOut::ALL {
            let _ = timeouts.get_or_create(&[("phase", phase.as_str())]);
        }
        registry.register(
            "review_timeouts",
            "Reviews answered 503 at their deadline, by phase (body, slot, review)",
            timeouts.clone(),
        );
        Overload {
            bodies_refused,
            accept_errors,
            timeouts,
        }
    }
}

impl Metrics {
    /// Registers every metric of the server.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("persistence_webhook");
        let reviews = Reviews::register(&mut registry);
        let reloads = Reloads::register(&mut registry);
        let cert_expiry = gauge(
            &mut registry,
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a unix timestamp",
        );
        let config_generation = gauge(
            &mut registry,
            "config_generation",
            "Generation of the persistence config in use: 1 at start, +1 per successful reload",
        );
        let in_flight = gauge(
            &mut registry,
            "reviews_in_flight",
            "Reviews being received or computed right now (waiting ones included)",
        );
        let slots_in_use = gauge(
            &mut registry,
            "review_slots_in_use",
            "Review slots taken; at --max-in-flight, complete requests wait for one",
        );
        let slots_limit = gauge(
            &mut registry,
            "review_slots_limit",
            "Review slots there are (--max-in-flight)",
        );
        let body_buffer_bytes = gauge(
            &mut registry,
            "body_buffer_bytes",
            "Request body bytes held right now, received or being reviewed (at most --max-body-buffer-bytes)",
        );
        let connections = Connections::register(&mut registry);
        let overload = Overload::register(&mut registry);
        Metrics {
            registry,
            reviews,
            reloads,
            cert_expiry,
            config_generation,
            in_flight,
            slots_in_use,
            slots_limit,
            body_buffer_bytes,
            connections,
            overload,
        }
    }

    /// The registry, for metrics another room owns (the in-cluster
    /// certificates'): registered there, they render with these, under the
    /// same prefix.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one answered review: `None` when it was patched, else why not.
    pub fn review(&self, reason: Option<Reason>, seconds: f64) {
        match reason {
            None => self.reviews.patched.inc(),
            // `Reason::ALL` is in declaration order, so the discriminant is the index.
            Some(r) => self.reviews.by_reason[r as usize].inc(),
        };
        self.reviews.latency.observe(seconds);
    }

    /// Times one `POST /mutate` request, from its headers to its answer.
    pub fn request(&self, seconds: f64) {
        self.reviews.request_latency.observe(seconds);
    }

    /// Counts one reload attempt; its result is the latest one until the next.
    pub fn reload(&self, what: Reloaded, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .reloads
            .get_or_create(&[("kind", what.label()), ("result", result)])
            .inc();
        self.reloads
            .reload_ok
            .get_or_create(&[("kind", what.label())])
            .set(i64::from(ok));
    }

    /// Counts an open connection until the guard is dropped.
    pub fn connection_opened(&self, port: Port) -> OpenConnection {
        let gauge = self
            .connections
            .open
            .get_or_create(&[("port", port.as_str())])
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// Counts one time the connection limit made the accept loop wait.
    pub fn connection_limited(&self, port: Port) {
        self.connections
            .limited
            .get_or_create(&[("port", port.as_str())])
            .inc();
    }

    /// Counts a connection the server closed itself.
    pub fn connection_closed(&self, port: Port, why: Closed) {
        self.connections
            .closed
            .get_or_create(&[("port", port.as_str()), ("reason", why.as_str())])
            .inc();
    }

    /// Counts a connection refused right after accept.
    pub fn connection_refused(&self, port: Port, why: Refused) {
        self.connections
            .refused
            .get_or_create(&[("port", port.as_str()), ("reason", why.as_str())])
            .inc();
    }

    /// Counts a body refused (503) for want of room in a budget.
    pub fn body_refused(&self, why: BodyRefused) {
        self.overload
            .bodies_refused
            .get_or_create(&[("reason", why.as_str())])
            .inc();
    }

    /// Counts a failed accept; `descriptors` when out of file descriptors.
    pub fn accept_error(&self, port: Port, descriptors: bool) {
        let kind = if descriptors { "descriptors" } else { "other" };
        self.overload
            .accept_errors
            .get_or_create(&[("port", port.as_str()), ("kind", kind)])
            .inc();
    }

    /// Counts a review answered 503 at its deadline.
    pub fn timed_out(&self, phase: TimedOut) {
        self.overload
            .timeouts
            .get_or_create(&[("phase", phase.as_str())])
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
        m.review(None, 0.0001);
        m.review(Some(Reason::UnknownStore), 0.0001);
        m.reload(Reloaded::Config, false);
        m.request(6.0);
        m.slots_limit.set(4);
        m.cert_expiry.set(1_900_000_000);
        m.config_generation.set(3);
        let open = m.connection_opened(Port::Webhook);
        m.connection_closed(Port::Metrics, Closed::Idle);
        m.accept_error(Port::Webhook, true);
        m.timed_out(TimedOut::Slot);
        m.connection_refused(Port::Webhook, Refused::PeerShare);
        m.body_refused(BodyRefused::PeerShare);
        let text = m.render();
        drop(open);
        assert!(m
            .render()
            .contains("persistence_webhook_connections_open{port=\"webhook\"} 0"));
        for line in [
            "persistence_webhook_reviews_total{outcome=\"patched\",reason=\"\"} 1",
            "persistence_webhook_reviews_total{outcome=\"denied\",reason=\"unknown-store\"} 1",
            "persistence_webhook_reviews_total{outcome=\"denied\",reason=\"mount-conflict\"} 0",
            "persistence_webhook_reviews_total{outcome=\"invalid\",reason=\"malformed\"} 0",
            "persistence_webhook_reviews_total{outcome=\"unchanged\",reason=\"opted-out\"} 0",
            "persistence_webhook_review_duration_seconds_count 2",
            "persistence_webhook_reloads_total{kind=\"config\",result=\"failure\"} 1",
            "persistence_webhook_reloads_total{kind=\"certificate\",result=\"success\"} 0",
            "persistence_webhook_certificate_expiry_timestamp_seconds 1900000000",
            "persistence_webhook_config_generation 3",
            "persistence_webhook_connections_open{port=\"webhook\"} 1",
            "persistence_webhook_connections_closed_total{port=\"metrics\",reason=\"idle\"} 1",
            "persistence_webhook_accept_errors_total{port=\"webhook\",kind=\"descriptors\"} 1",
            "persistence_webhook_connections_limited_total{port=\"metrics\"} 0",
            "persistence_webhook_review_timeouts_total{phase=\"slot\"} 1",
            "persistence_webhook_connections_refused_total{port=\"webhook\",reason=\"peer-share\"} 1",
            "persistence_webhook_connections_refused_total{port=\"metrics\",reason=\"peer-share\"} 0",
            "persistence_webhook_bodies_refused_total{reason=\"peer-share\"} 1",
            "persistence_webhook_bodies_refused_total{reason=\"budget\"} 0",
            "persistence_webhook_body_buffer_bytes 0",
            "persistence_webhook_review_slots_in_use 0",
            "persistence_webhook_review_slots_limit 4",
            "persistence_webhook_last_reload_successful{kind=\"config\"} 0",
            "persistence_webhook_last_reload_successful{kind=\"certificate\"} 1",
            "persistence_webhook_request_duration_seconds_bucket{le=\"5.0\"} 0",
            "persistence_webhook_request_duration_seconds_bucket{le=\"8.0\"} 1",
            "persistence_webhook_request_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        m.reload(Reloaded::Config, true);
        assert!(m
            .render()
            .contains("persistence_webhook_last_reload_successful{kind=\"config\"} 1"));
        assert!(!text.contains("ca_expiry"), "file mode has no CA to watch");
    }
}

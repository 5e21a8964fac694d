//! The HTTPS admission server behind `persistence-webhook serve`. It wraps
//! the pure [`crate::review::review`] and adds nothing to the decision:
//! TLS, limits, hot reload of config and certificate, probes, metrics,
//! connections and their shutdown. This file holds the state the handlers
//! share and the two ports' routes; the command (`crate::serve`) loads,
//! binds and starts it all.

pub mod admit;
pub mod intake;
pub mod listener;
pub mod metrics;
pub mod peers;
pub mod reload;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::bounds::Bounds;
use crate::config::Config;
use intake::BodyBudget;
use metrics::Metrics;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body; past it: 413.
    pub max_body_bytes: usize,
    /// Longest a review may take, body read included, unless the API
    /// server's `?timeout=` asks for less.
    pub request_timeout: Duration,
    /// Reviews computed at once; complete requests wait for a slot (within
    /// their timeout).
    pub max_in_flight: usize,
    /// Bytes all request bodies together may hold.
    pub max_body_buffer_bytes: usize,
    /// Longest a body may take to arrive (within the review's deadline).
    pub body_read_timeout: Duration,
    /// The bounds on each review's patch.
    pub bounds: Bounds,
}

impl Default for Limits {
    /// The `serve` flags' defaults.
    fn default() -> Limits {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(8),
            max_in_flight: 32,
            max_body_buffer_bytes: 32 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(2),
            bounds: Bounds::default(),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    config: ArcSwap<Config>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    limits: Limits,
    slots: Arc<Semaphore>,
    heavy: Arc<Semaphore>,
    bodies: BodyBudget,
}

impl AppState {
    /// State serving `config`, ready, generation 1.
    pub fn new(config: Config, limits: Limits) -> AppState {
        AppState::with_metrics(config, limits, Metrics::new())
    }

    /// The same, counting into `metrics`.
    pub fn with_metrics(config: Config, limits: Limits, metrics: Metrics) -> AppState {
        let metrics = Arc::new(metrics);
        metrics.config_generation.set(1);
        let slots = limits.max_in_flight.max(1);
        metrics
            .slots_limit
            .set(i64::try_from(slots).unwrap_or(i64::MAX));
        AppState {
            config: ArcSwap::from_pointee(config),
            bodies: BodyBudget::new(
                limits.max_body_buffer_bytes,
                metrics.body_buffer_bytes.clone(),
            ),
            metrics,
            ready: AtomicBool::new(true),
            slots: Arc::new(Semaphore::new(slots)),
            heavy: Arc::new(Semaphore::new(admit::HEAVY_REVIEWS)),
            limits,
        }
    }

    /// Takes a new config into use for every review that starts from now on.
    pub fn swap_config(&self, config: Config) {
        self.config.store(Arc::new(config));
        self.metrics.config_generation.inc();
    }

    /// The config reviews use now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Marks the server as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }
}

/// The TLS port's routes: `POST /mutate`, and the probes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(admit::mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// The plain-HTTP port's routes: `/metrics` and the probes.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no route for {}: the webhook answers POST /mutate; probes are /healthz and /readyz\n",
            admit::clip(uri.path())
        ),
    )
        .into_response()
}

//! `persistence-webhook serve`: the HTTPS admission server. It wraps the pure
//! [`crate::review::review`] and adds nothing to the decision: TLS, limits,
//! hot reload of config and certificate, probes, metrics, logs, shutdown.

pub mod metrics;
pub mod reload;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;
use tracing::{field, Instrument};

use crate::bounds::Bounds;
use crate::cli::ServeArgs;
use crate::config::{Config, Role};
use crate::review::{review_with, Decision};
use metrics::Metrics;

/// Bodies larger than this are reviewed on the blocking pool, so one huge pod
/// does not stall the other connections served by the same worker.
const INLINE_REVIEW_BYTES: usize = 256 * 1024;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body; past it: 413.
    pub max_body_bytes: usize,
    /// Longest a review may take, body read included, unless the API
    /// server's `?timeout=` asks for less.
    pub request_timeout: Duration,
    /// Reviews processed at once; the rest wait (within their timeout).
    pub max_in_flight: usize,
    /// The bounds on each review's patch.
    pub bounds: Bounds,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    config: ArcSwap<Config>,
    /// The metrics registry.
    pub metrics: Metrics,
    ready: AtomicBool,
    limits: Limits,
    permits: Semaphore,
}

impl AppState {
    /// State serving `config`, ready, generation 1.
    pub fn new(config: Config, limits: Limits) -> AppState {
        let metrics = Metrics::new();
        metrics.config_generation.set(1);
        AppState {
            config: ArcSwap::from_pointee(config),
            metrics,
            ready: AtomicBool::new(true),
            permits: Semaphore::new(limits.max_in_flight.max(1)),
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
    let mutate = post(mutate)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/mutate", mutate)
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
            uri.path()
        ),
    )
        .into_response()
}

/// The API server's own deadline, `?timeout=10s`, in Go's duration syntax.
fn query_timeout(uri: &Uri) -> Option<Duration> {
    let value = uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))?;
    humantime::parse_duration(value).ok()
}

/// Bounds the time (body read included) and the number of reviews in flight.
async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // A body announced too large is refused before it is read (and before
    // hyper answers `Expect: 100-continue`), without taking a review slot.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.limits.max_body_bytes as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than the limit of {} bytes (--max-body-bytes)\n",
                state.limits.max_body_bytes
            ),
        )
            .into_response();
    }
    let limit = match query_timeout(req.uri()) {
        Some(asked) => asked.min(state.limits.request_timeout),
        None => state.limits.request_timeout,
    };
    struct InFlight<'a>(&'a Metrics);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.in_flight.dec();
        }
    }
    state.metrics.in_flight.inc();
    let _counted = InFlight(&state.metrics);
    let work = async {
        let _permit = state.permits.acquire().await;
        next.run(req).await
    };
    match tokio::time::timeout(limit, work).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limit, "Review timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the review did not finish within {limit:?}\n"),
            )
                .into_response()
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_json(&headers) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json (an AdmissionReview)\n",
        )
            .into_response();
    }
    let span = tracing::info_span!(
        "review",
        uid = field::Empty,
        namespace = field::Empty,
        pod = field::Empty,
        operation = field::Empty,
        dry_run = field::Empty,
    );
    async move {
        let start = Instant::now();
        let config = state.config();
        let bounds = state.limits.bounds;
        let result = if body.len() > INLINE_REVIEW_BYTES {
            match tokio::task::spawn_blocking(move || review_with(&config, &bounds, &body)).await {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(error = %e, "Review task failed");
                    return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
                }
            }
        } else {
            review_with(&config, &bounds, &body)
        };
        let seconds = start.elapsed().as_secs_f64();
        match result {
            Ok(reviewed) => {
                let span = tracing::Span::current();
                let s = &reviewed.subject;
                span.record("uid", s.uid.as_str());
                span.record("namespace", s.namespace.as_str());
                span.record("pod", s.name.as_str());
                span.record("operation", s.operation.as_str());
                span.record("dry_run", s.dry_run);
                let outcome = reviewed.decision.outcome();
                state.metrics.review(outcome, seconds);
                match &reviewed.decision {
                    Decision::Denied(message) => {
                        tracing::info!(outcome, allowed = false, %message, "Denied")
                    }
                    Decision::Invalid(message) => {
                        tracing::warn!(outcome, allowed = false, %message, "Refused a malformed request")
                    }
                    Decision::Patched(p) => {
                        tracing::debug!(outcome, allowed = true, patched = true, operations = p.0.len(), "Reviewed")
                    }
                    Decision::Unchanged(skip) => {
                        tracing::debug!(outcome, allowed = true, patched = false, reason = skip.as_str(), "Reviewed")
                    }
                }
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    reviewed.response,
                )
                    .into_response()
            }
            Err(e) => {
                state.metrics.review("invalid", seconds);
                tracing::warn!(error = %e, "Refused a body that is not an AdmissionReview");
                (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// A started server: where it listens, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The HTTPS address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The plain-HTTP metrics address actually bound.
    pub metrics_addr: SocketAddr,
    /// The shared state (config, metrics).
    pub state: Arc<AppState>,
    handle: axum_server::Handle<SocketAddr>,
    drain: Duration,
    delay: Duration,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight reviews finish (up to the drain
    /// timeout), and waits until everything has stopped.
    pub async fn shutdown(self) -> Result<()> {
        self.state.set_draining();
        self.handle.graceful_shutdown(Some(self.drain));
        self.task.await.context("the server task failed")?
    }
}

/// Loads, checks and binds everything, then serves in the background.
pub async fn start(args: ServeArgs) -> Result<Running> {
    let ServeArgs {
        addr,
        metrics_addr,
        config,
        tls_cert,
        tls_key,
        demo,
        demo_dir,
        reload_interval,
        max_body_bytes,
        request_timeout,
        header_read_timeout,
        max_in_flight,
        drain_timeout,
        shutdown_delay,
        log_format: _,
        bounds,
    } = args;

    // Everything is loaded and checked before a socket is bound.
    let loaded = reload::load(config, tls_cert, tls_key, demo.then_some(demo_dir))?;
    let limits = Limits {
        max_body_bytes,
        request_timeout: *request_timeout,
        max_in_flight,
        bounds: bounds.into(),
    };
    let state = Arc::new(AppState::new(loaded.config.clone(), limits));
    state.metrics.cert_expiry.set(loaded.credentials.not_after);
    let resolver = Arc::new(tls::Resolver::new(loaded.credentials.key.clone()));

    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on --addr {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {metrics_addr}"))?;
    let metrics_bound = metrics_listener
        .local_addr()
        .context("reading the bound metrics address")?;

    let handle = axum_server::Handle::new();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls::server_config(
        resolver.clone(),
    )));
    let acceptor =
        axum_server::tls_rustls::RustlsAcceptor::new(tls).handshake_timeout(*header_read_timeout);
    let mut server = axum_server::from_tcp(listener)
        .context("preparing the listener")?
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(*header_read_timeout))
        // hyper reads ahead up to ~400 KiB per connection by default; with
        // hundreds of connections sending large pods that, not the reviews
        // in flight, was most of the memory (measured: 140 -> 90 MiB peak
        // for 256 concurrent 1 MiB reviews, tests/soak.rs).
        .max_buf_size(64 * 1024);

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let reload_task = tokio::spawn(reload::watch(
        loaded.watcher,
        state.clone(),
        resolver,
        *reload_interval,
        stop_rx.clone(),
    ));
    let mut metrics_stop = stop_rx;
    let metrics_server = axum::serve(metrics_listener, metrics_router(state.clone()))
        .with_graceful_shutdown(async move {
            let _ = metrics_stop.wait_for(|stop| *stop).await;
        });

    let metrics_task = tokio::spawn(async move { metrics_server.await });
    let app = router(state.clone());
    // The metrics port (with /readyz answering 503) and the reloader stay up
    // until the webhook port has drained.
    let task = tokio::spawn(async move {
        let served = server.serve(app.into_make_service()).await;
        let _ = stop.send(true);
        let metrics = metrics_task.await;
        let _ = reload_task.await;
        served.context("serving")?;
        metrics
            .context("the metrics task failed")?
            .context("serving metrics")?;
        Ok(())
    });

    tracing::info!(
        addr = %bound,
        metrics_addr = %metrics_bound,
        stores = loaded.config.stores(Role::Data).len() + loaded.config.stores(Role::Outputs).len(),
        demo,
        "Listening"
    );
    Ok(Running {
        addr: bound,
        metrics_addr: metrics_bound,
        state,
        handle,
        drain: *drain_timeout,
        delay: *shutdown_delay,
        task,
    })
}

/// Runs `serve` until SIGTERM or SIGINT, then drains and returns. If the
/// server stops on its own first (an I/O error), that error is returned.
pub async fn run(args: ServeArgs) -> Result<()> {
    let mut running = start(args).await?;
    tokio::select! {
        signal = shutdown_signal() => {
            // Not ready at once, but still serving: the API server keeps
            // calling this pod until its endpoint removal has propagated.
            running.state.set_draining();
            tracing::info!(signal, delay = ?running.delay, drain = ?running.drain, "Shutting down: not ready, still serving until the delay ends, then finishing in-flight reviews");
            tokio::time::sleep(running.delay).await;
            running.shutdown().await?;
        }
        ended = &mut running.task => {
            ended.context("the server task failed")??;
            anyhow::bail!("the server stopped without being asked to");
        }
    }
    tracing::info!("Stopped");
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_timeout_parses_go_durations() {
        let cases = [
            ("/mutate?timeout=10s", Some(Duration::from_secs(10))),
            (
                "/mutate?a=b&timeout=500ms",
                Some(Duration::from_millis(500)),
            ),
            ("/mutate?timeout=bogus", None),
            ("/mutate", None),
        ];
        for (uri, want) in cases {
            let uri: Uri = uri.parse().expect("uri");
            assert_eq!(query_timeout(&uri), want, "{uri}");
        }
    }

    #[test]
    fn json_content_types() {
        for (ct, want) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
            assert_eq!(is_json(&h), want, "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}

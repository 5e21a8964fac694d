//! `persistence-webhook serve`: the HTTPS admission server. It wraps the pure
//! [`crate::review::review`] and adds nothing to the decision: TLS, limits,
//! hot reload of config and certificate, probes, metrics, logs, shutdown.

pub mod intake;
pub mod listener;
pub mod metrics;
pub mod reload;
pub mod tls;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};
use tracing::{field, Instrument};

use crate::bounds::Bounds;
use crate::cli::ServeArgs;
use crate::config::{Config, Role};
use crate::review::{review_with, Decision, Reason, Reviewed};
use intake::{BodyBudget, IntakeError, Received};
use listener::{ConnLimits, Listener};
use metrics::{Metrics, Port, TimedOut};

/// Bodies larger than this are reviewed on the blocking pool, so one large
/// pod does not stall the other connections served by the same worker (and
/// the probes). A review's work is linear in its body and its patch is
/// capped, so below this size it takes well under a millisecond.
const INLINE_REVIEW_BYTES: usize = 64 * 1024;

/// Reviews of bodies over [`INLINE_REVIEW_BYTES`] computed at once. They
/// are CPU work whose memory grows with the body: one at a time keeps a
/// core free for everything else (probes, small reviews) and keeps their
/// share of the memory bound to one body's worth.
const HEAVY_REVIEWS: usize = 1;

/// Longest user-supplied string (uid, name, namespace) put in a log line.
const LOG_FIELD_CHARS: usize = 128;

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
            max_in_flight: 4,
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
        let metrics = Arc::new(Metrics::new());
        metrics.config_generation.set(1);
        AppState {
            config: ArcSwap::from_pointee(config),
            bodies: BodyBudget::new(
                limits.max_body_buffer_bytes,
                metrics.body_buffer_bytes.clone(),
            ),
            metrics,
            ready: AtomicBool::new(true),
            slots: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            heavy: Arc::new(Semaphore::new(HEAVY_REVIEWS)),
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
        .route("/mutate", post(mutate))
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
            clip(uri.path())
        ),
    )
        .into_response()
}

/// The query string of `POST /mutate`: only the API server's deadline is read.
#[derive(serde::Deserialize)]
struct MutateQuery {
    timeout: Option<String>,
}

/// The API server's own deadline, `?timeout=10s`, in Go's duration syntax.
/// A query that does not parse, or a timeout that does not, leaves the
/// server's own `--request-timeout` in force.
fn query_timeout(uri: &Uri) -> Option<Duration> {
    let Query(MutateQuery { timeout }) = Query::try_from_uri(uri).ok()?;
    humantime::parse_duration(&timeout?).ok()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// A user-supplied string as put in a log line: at most
/// [`LOG_FIELD_CHARS`] characters. (Control characters are escaped by the
/// log writer, for every field.)
fn clip(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(LOG_FIELD_CHARS) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}... ({} bytes)", &s[..cut], s.len())),
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// Counts a request as in flight from arrival to answer.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// `POST /mutate`: the body within its limits, then a slot, then the review.
async fn mutate(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if !is_json(req.headers()) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json (an AdmissionReview)\n".into(),
        );
    }
    let limits = state.limits;
    // A body announced too large is refused before it is read (and before
    // hyper answers `Expect: 100-continue`).
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{}\n",
                IntakeError::TooLarge {
                    limit: limits.max_body_bytes
                }
            ),
        );
    }
    let timeout = match query_timeout(req.uri()) {
        Some(asked) => asked.min(limits.request_timeout),
        None => limits.request_timeout,
    };
    let deadline = Instant::now() + timeout;
    state.metrics.in_flight.inc();
    let _counted = InFlight(&state.metrics);
    let span = tracing::info_span!(
        "review",
        uid = field::Empty,
        namespace = field::Empty,
        pod = field::Empty,
        operation = field::Empty,
        dry_run = field::Empty,
    );
    // The body has its own, shorter, deadline: the API server sends it at
    // once, so a body still arriving after it is a stalled or hostile
    // upload, and its share of the body budget is better given back.
    let body_timeout = limits.body_read_timeout.min(timeout);
    async {
        let body = match intake::read(
            req.into_body(),
            announced,
            &state.bodies,
            limits.max_body_bytes,
            intake::Deadlines {
                client: body_timeout,
                request: deadline,
            },
        )
        .await
        {
            Ok(body) => body,
            Err(e @ IntakeError::TooLarge { .. }) => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n"))
            }
            Err(e @ (IntakeError::TimedOut { .. } | IntakeError::Busy)) => {
                state.metrics.timed_out(TimedOut::Body);
                tracing::warn!(timeout = ?body_timeout, error = %e, "Review timed out receiving the body");
                let (status, within, flag) = match e {
                    IntakeError::Busy => (StatusCode::SERVICE_UNAVAILABLE, timeout, "--request-timeout or ?timeout="),
                    _ => (StatusCode::REQUEST_TIMEOUT, body_timeout, "--body-read-timeout"),
                };
                return plain(
                    status,
                    format!("the review did not finish within {within:?} ({flag}): {e}\n"),
                );
            }
            Err(e @ IntakeError::Broken(_)) => {
                return plain(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        let Ok(Ok(permit)) = timeout_at(deadline, state.slots.clone().acquire_owned()).await else {
            return timed_out(&state, TimedOut::Slot, timeout, &body);
        };
        let slot = Slot::taken(permit, &state.metrics);
        answer(&state, Held { body, _slot: slot }, deadline, timeout).await
    }
    .instrument(span)
    .await
}

/// A review slot, counted in `review_slots_in_use` until dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    in_use: prometheus_client::metrics::gauge::Gauge,
}

impl Slot {
    fn taken(permit: OwnedSemaphorePermit, metrics: &Metrics) -> Slot {
        metrics.slots_in_use.inc();
        Slot {
            _permit: permit,
            in_use: metrics.slots_in_use.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_use.dec();
    }
}

/// What a review holds while it computes: its body (and buffer room), its
/// slot, and for a large body the heavy-review permit. They travel with the
/// work, so a review whose client has timed out keeps them until it really
/// ends: the memory bound counts work, not waiting clients.
struct Held {
    body: Received,
    _slot: Slot,
}

/// Reviews a complete body (inline when small, else on the blocking pool)
/// and turns the result into the HTTP answer.
async fn answer(state: &AppState, held: Held, deadline: Instant, timeout: Duration) -> Response {
    let start = std::time::Instant::now();
    let config = state.config();
    let result = if held.body.bytes().len() <= INLINE_REVIEW_BYTES {
        review_with(&config, &state.limits.bounds, held.body.bytes())
    } else {
        let Ok(Ok(heavy)) = timeout_at(deadline, state.heavy.clone().acquire_owned()).await else {
            return timed_out(state, TimedOut::Slot, timeout, &held.body);
        };
        // A review is not interrupted once started (its work is bounded:
        // linear in the body, with a capped patch); one whose deadline has
        // passed before a blocking thread picks it up never starts.
        let cancelled = Arc::new(AtomicBool::new(false));
        let bounds = state.limits.bounds;
        let job = {
            let cancelled = cancelled.clone();
            tokio::task::spawn_blocking(move || {
                let _heavy = heavy;
                if cancelled.load(Ordering::Relaxed) {
                    return (None, held);
                }
                let result = review_with(&config, &bounds, held.body.bytes());
                (Some(result), held)
            })
        };
        match timeout_at(deadline, job).await {
            Ok(Ok((Some(result), _held))) => result,
            Ok(Ok((None, held))) => return timed_out(state, TimedOut::Review, timeout, &held.body),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Review task failed");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into());
            }
            Err(_) => {
                cancelled.store(true, Ordering::Relaxed);
                state.metrics.timed_out(TimedOut::Review);
                tracing::warn!(timeout = ?timeout, "Review timed out computing the answer");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the review did not finish within {timeout:?}\n"),
                );
            }
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    match result {
        Ok(reviewed) => respond(state, reviewed, seconds),
        Err(e) => {
            state.metrics.review(Some(Reason::Malformed), seconds);
            tracing::warn!(error = %e, "Refused a body that is not an AdmissionReview");
            plain(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

fn respond(state: &AppState, reviewed: Reviewed, seconds: f64) -> Response {
    let span = tracing::Span::current();
    let s = &reviewed.subject;
    span.record("uid", &*clip(&s.uid));
    span.record("namespace", &*clip(&s.namespace));
    span.record("pod", &*clip(&s.name));
    span.record("operation", &*clip(&s.operation));
    span.record("dry_run", s.dry_run);
    let outcome = reviewed.decision.outcome();
    state.metrics.review(reviewed.decision.reason(), seconds);
    match &reviewed.decision {
        Decision::Denied(denial) => {
            tracing::info!(
                outcome,
                allowed = false,
                reason = denial.reason().as_str(),
                field = denial.field().unwrap_or_default(),
                message = %denial,
                "Denied"
            )
        }
        Decision::Invalid(message) => {
            tracing::warn!(
                outcome,
                allowed = false,
                reason = Reason::Malformed.as_str(),
                %message,
                "Refused a malformed request"
            )
        }
        Decision::Patched(p) => {
            tracing::debug!(
                outcome,
                allowed = true,
                patched = true,
                operations = p.0.len(),
                "Reviewed"
            )
        }
        Decision::Unchanged(skip) => {
            tracing::debug!(
                outcome,
                allowed = true,
                patched = false,
                reason = skip.reason().as_str(),
                "Reviewed"
            )
        }
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        reviewed.response,
    )
        .into_response()
}

/// The 503 for a review whose deadline passed after its body arrived; the
/// log line names the review's uid (read from the body only on this path).
fn timed_out(state: &AppState, phase: TimedOut, timeout: Duration, body: &Received) -> Response {
    #[derive(serde::Deserialize)]
    struct Uid<'a> {
        #[serde(borrow)]
        request: Option<Req<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Req<'a> {
        #[serde(borrow)]
        uid: Option<Cow<'a, str>>,
    }
    let uid = serde_json::from_slice::<Uid>(body.bytes())
        .ok()
        .and_then(|u| u.request?.uid)
        .unwrap_or_default();
    state.metrics.timed_out(phase);
    tracing::warn!(uid = %clip(&uid), timeout = ?timeout, phase = phase.as_str(), "Review timed out");
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the review did not finish within {timeout:?}\n"),
    )
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
    stop: tokio::sync::watch::Sender<bool>,
    drain: Duration,
    delay: Duration,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight reviews finish (up to the drain
    /// timeout), and waits until everything has stopped.
    pub async fn shutdown(self) -> Result<()> {
        self.state.set_draining();
        let _ = self.stop.send(true);
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
        max_body_buffer_bytes,
        request_timeout,
        body_read_timeout,
        header_read_timeout,
        idle_timeout,
        max_in_flight,
        max_connections,
        max_metrics_connections,
        drain_timeout,
        shutdown_delay,
        log_format: _,
        bounds,
    } = args;
    if max_body_buffer_bytes < max_body_bytes {
        anyhow::bail!(
            "--max-body-buffer-bytes ({max_body_buffer_bytes}) must be at least --max-body-bytes ({max_body_bytes}), or no body of the largest size could ever be received"
        );
    }

    // Everything is loaded and checked before a socket is bound.
    let loaded = reload::load(config, tls_cert, tls_key, demo.then_some(demo_dir))?;
    let limits = Limits {
        max_body_bytes,
        request_timeout: *request_timeout,
        max_in_flight,
        max_body_buffer_bytes,
        body_read_timeout: *body_read_timeout,
        bounds: bounds.into(),
    };
    let open_files = listener::raise_open_files_limit();
    let wanted_files = (max_connections + max_metrics_connections) as u64 + 64;
    if let Some(have) = open_files.filter(|have| *have < wanted_files) {
        tracing::warn!(
            open_files = have,
            needed = wanted_files,
            "The open-files limit is below --max-connections + --max-metrics-connections + 64: connections may be refused for want of descriptors before the limit is reached"
        );
    }
    let state = Arc::new(AppState::new(loaded.config.clone(), limits));
    state.metrics.cert_expiry.set(loaded.credentials.not_after);
    let resolver = Arc::new(tls::Resolver::new(loaded.credentials.key.clone()));

    let bind = |addr: SocketAddr, flag: &str| -> Result<tokio::net::TcpListener> {
        let socket = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {flag} {addr}"))?;
        socket
            .set_nonblocking(true)
            .with_context(|| format!("preparing {flag} {addr}"))?;
        tokio::net::TcpListener::from_std(socket)
            .with_context(|| format!("preparing {flag} {addr}"))
    };
    let webhook_socket = bind(addr, "--addr")?;
    let metrics_socket = bind(metrics_addr, "--metrics-addr")?;
    let bound = webhook_socket
        .local_addr()
        .context("reading the bound address")?;
    let metrics_bound = metrics_socket
        .local_addr()
        .context("reading the bound metrics address")?;

    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(resolver.clone())));
    let conn_limits = |max_connections| ConnLimits {
        max_connections,
        header_read_timeout: *header_read_timeout,
        idle_timeout: *idle_timeout,
    };
    let webhook = Listener {
        socket: webhook_socket,
        tls: Some(tls),
        app: router(state.clone()),
        limits: conn_limits(max_connections),
        port: Port::Webhook,
    };
    let metrics = Listener {
        socket: metrics_socket,
        tls: None,
        app: metrics_router(state.clone()),
        limits: conn_limits(max_metrics_connections),
        port: Port::Metrics,
    };

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (metrics_stop, metrics_stop_rx) = tokio::sync::watch::channel(false);
    let reload_task = tokio::spawn(reload::watch(
        loaded.watcher,
        state.clone(),
        resolver,
        *reload_interval,
        metrics_stop_rx.clone(),
    ));
    let metrics_task = tokio::spawn(listener::serve(
        metrics,
        state.metrics.clone(),
        metrics_stop_rx,
        Duration::from_secs(1),
    ));
    let webhook_task = listener::serve(webhook, state.metrics.clone(), stop_rx, *drain_timeout);
    // The metrics port (with /readyz answering 503) and the reloader stay up
    // until the webhook port has drained.
    let task = tokio::spawn(async move {
        webhook_task.await;
        let _ = metrics_stop.send(true);
        metrics_task.await.context("the metrics task failed")?;
        let _ = reload_task.await;
        Ok(())
    });

    tracing::info!(
        addr = %bound,
        metrics_addr = %metrics_bound,
        stores = loaded.config.stores(Role::Data).len() + loaded.config.stores(Role::Outputs).len(),
        max_connections,
        max_in_flight,
        open_files,
        demo,
        "Listening"
    );
    Ok(Running {
        addr: bound,
        metrics_addr: metrics_bound,
        state,
        stop,
        drain: *drain_timeout,
        delay: *shutdown_delay,
        task,
    })
}

/// Runs `serve` until SIGTERM or SIGINT, then drains and returns. If the
/// server stops on its own first (an I/O error), that error is returned.
pub async fn run(args: ServeArgs) -> Result<()> {
    // The handlers are installed before anything is bound and "Listening"
    // is logged: a SIGTERM that arrives right after start-up drains like any
    // other instead of killing the process (the default action).
    let signals = Signals::install();
    let mut running = start(args).await?;
    tokio::select! {
        signal = signals.received() => {
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

/// SIGTERM and SIGINT, listened for from the moment they are installed.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => {
                tracing::error!("Cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
                Signals(None)
            }
        }
    }

    async fn received(self) -> &'static str {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_the_flags_defaults() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["persistence-webhook", "serve", "--demo"])
            .expect("defaults parse");
        let crate::cli::Command::Serve(a) = cli.command else {
            panic!("not serve");
        };
        let d = Limits::default();
        assert_eq!(d.max_body_bytes, a.max_body_bytes);
        assert_eq!(d.request_timeout, *a.request_timeout);
        assert_eq!(d.max_in_flight, a.max_in_flight);
        assert_eq!(d.max_body_buffer_bytes, a.max_body_buffer_bytes);
        assert_eq!(d.body_read_timeout, *a.body_read_timeout);
        assert_eq!(d.bounds, Bounds::from(a.bounds));
    }

    #[test]
    fn query_timeout_parses_go_durations() {
        let cases = [
            ("/mutate?timeout=10s", Some(Duration::from_secs(10))),
            (
                "/mutate?a=b&timeout=500ms",
                Some(Duration::from_millis(500)),
            ),
            ("/mutate?timeout=1%30s", Some(Duration::from_secs(10))),
            ("/mutate?timeout=bogus", None),
            ("/mutate?timeout=", None),
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

//! `POST /mutate`: one AdmissionReview from its headers to its answer. The
//! body is received within its limits (`intake`), a review slot is taken,
//! the pure core's `review_with` decides (inline for small bodies, on the
//! blocking pool one at a time for large ones), and the answer is logged
//! and counted. Everything a review holds travels with its work, so the
//! memory bound (docs/src/reference/hardening.md) counts work, not waiting clients.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout_at, Instant};
use tracing::{field, Instrument};

use super::intake::{self, IntakeError, Received};
use super::listener::{Answers, Unsent};
use super::metrics::{BodyRefused, Metrics, TimedOut};
use super::peers::PeerRoom;
use super::AppState;
use crate::review::{review_with, Decision, Reason, Reviewed};

/// Bodies larger than this are reviewed on the blocking pool, so one large
/// pod does not stall the other connections served by the same worker (and
/// the probes). A review's work is linear in its body and its patch is
/// capped, so below this size it takes well under a millisecond.
pub(super) const INLINE_REVIEW_BYTES: usize = 64 * 1024;

/// Reviews of bodies over [`INLINE_REVIEW_BYTES`] computed at once. They
/// are CPU work whose memory grows with the body: one at a time keeps a
/// core free for everything else (probes, small reviews) and keeps their
/// share of the memory bound to one body's worth.
pub(super) const HEAVY_REVIEWS: usize = 1;

/// Longest user-supplied string (uid, name, namespace) put in a log line.
const LOG_FIELD_CHARS: usize = 128;

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
pub(super) fn clip(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(LOG_FIELD_CHARS) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}... ({} bytes)", &s[..cut], s.len())),
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// Counts a request as in flight from arrival to answer, and times it.
struct InFlight<'a> {
    metrics: &'a Metrics,
    since: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
        self.metrics.request(self.since.elapsed().as_secs_f64());
    }
}

/// `POST /mutate`: the body within its limits, then a slot, then the review.
pub(super) async fn mutate(State(state): State<Arc<AppState>>, req: Request) -> Response {
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
    let since = Instant::now();
    let deadline = since + timeout;
    state.metrics.in_flight.inc();
    let _counted = InFlight {
        metrics: &state.metrics,
        since,
    };
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
    // The peer's share of the body budget, handed over by its connection
    // (absent when the router is called without the listener, in tests).
    let peer = req.extensions().get::<Arc<PeerRoom>>().cloned();
    // The connection's watch on its unsent answers (absent likewise).
    let answers = req.extensions().get::<Answers>().cloned();
    async {
        let body = match intake::read(
            req.into_body(),
            announced,
            &state.bodies,
            peer.as_deref(),
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
            Err(e @ (IntakeError::TimedOut { .. } | IntakeError::Busy | IntakeError::PeerBusy)) => {
                state.metrics.timed_out(TimedOut::Body);
                match e {
                    IntakeError::Busy => state.metrics.body_refused(BodyRefused::Budget),
                    IntakeError::PeerBusy => state.metrics.body_refused(BodyRefused::PeerShare),
                    _ => {}
                }
                tracing::warn!(timeout = ?body_timeout, error = %e, "Review timed out receiving the body");
                let (status, within, flag) = match e {
                    IntakeError::Busy | IntakeError::PeerBusy => (StatusCode::SERVICE_UNAVAILABLE, timeout, "--request-timeout or ?timeout="),
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
        // One of the peer's own slots first, then a shared one: a peer that
        // does not read its answers holds at most its share of the slots.
        let own = match &peer {
            Some(peer) => match timeout_at(deadline, peer.reviews.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => return timed_out(&state, TimedOut::PeerSlot, timeout, &body),
            },
            None => None,
        };
        let Ok(Ok(permit)) = timeout_at(deadline, state.slots.clone().acquire_owned()).await else {
            return timed_out(&state, TimedOut::Slot, timeout, &body);
        };
        let held = Held {
            body: Arc::new(body),
            slot: Slot::taken(permit, own, &state.metrics),
        };
        answer(&state, held, deadline, timeout, answers).await
    }
    .instrument(span)
    .await
}

/// A review slot, and the peer's own slot beside it, counted in
/// `review_slots_in_use` until dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _own: Option<OwnedSemaphorePermit>,
    in_use: prometheus_client::metrics::gauge::Gauge,
}

impl Slot {
    fn taken(
        permit: OwnedSemaphorePermit,
        own: Option<OwnedSemaphorePermit>,
        metrics: &Metrics,
    ) -> Slot {
        metrics.slots_in_use.inc();
        Slot {
            _permit: permit,
            _own: own,
            in_use: metrics.slots_in_use.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_use.dec();
    }
}

/// What a review holds while it computes: its body (and buffer room) and
/// its slot (a large body's heavy-review permit joins them in the blocking
/// job, see [`answer`]). They travel with the work, so a review whose client
/// has timed out keeps them until it really ends: the memory bound counts
/// work, not waiting clients.
struct Held {
    body: Arc<Received>,
    slot: Slot,
}

/// The answer's bytes with what they hold: their review slot and their
/// place among the connection's unsent answers, both given back when hyper
/// drops the last of the bytes (written, or the connection gone).
struct Answer {
    bytes: Bytes,
    _slot: Slot,
    _unsent: Option<Unsent>,
}

impl AsRef<[u8]> for Answer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reviews a complete body (inline when small, else on the blocking pool)
/// and turns the result into the HTTP answer. The review's slot goes with
/// the answer's bytes until they are written (or dropped with the
/// connection at the deadline: see `listener::Answers`), so an answer a
/// client does not take stays within `--max-in-flight`.
async fn answer(
    state: &AppState,
    held: Held,
    deadline: Instant,
    timeout: Duration,
    answers: Option<Answers>,
) -> Response {
    let start = std::time::Instant::now();
    let config = state.config();
    let (result, held) = if held.body.bytes().len() <= INLINE_REVIEW_BYTES {
        (
            review_with(&config, &state.limits.bounds, held.body.bytes()),
            held,
        )
    } else {
        let Ok(Ok(heavy)) = timeout_at(deadline, state.heavy.clone().acquire_owned()).await else {
            return timed_out(state, TimedOut::Slot, timeout, &held.body);
        };
        // A review is not interrupted once started (its work is bounded:
        // linear in the body, with a capped patch); one whose deadline has
        // passed before a blocking thread picks it up never starts. The body
        // is shared with the job, so a timeout can still name the uid.
        let body = held.body.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        let bounds = state.limits.bounds;
        let job = {
            let cancelled = cancelled.clone();
            tokio::task::spawn_blocking(move || {
                let _heavy = heavy;
                // What the review held comes back with its result (and is
                // dropped with the job when it never starts).
                unless_late(deadline, &cancelled, || {
                    review_with(&config, &bounds, held.body.bytes())
                })
                .map(|result| (result, held))
            })
        };
        match timeout_at(deadline, job).await {
            Ok(Ok(Some(done))) => done,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Review task failed");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into());
            }
            // The deadline passed (a job that finds it cancelled has no one
            // waiting for it any more).
            Err(_) | Ok(Ok(None)) => {
                cancelled.store(true, Ordering::Relaxed);
                return timed_out(state, TimedOut::Review, timeout, &body);
            }
        }
    };
    // The body and its room in the budget are given back now; the slot is
    // not.
    let Held { body, slot } = held;
    drop(body);
    let seconds = start.elapsed().as_secs_f64();
    match result {
        Ok(reviewed) => {
            let answer = respond(state, reviewed, seconds);
            let held = Answer {
                bytes: answer,
                _slot: slot,
                _unsent: answers.map(|a| a.unsent(deadline)),
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                Bytes::from_owner(held),
            )
                .into_response()
        }
        Err(e) => {
            state.metrics.review(Some(Reason::Malformed), seconds);
            tracing::warn!(error = %e, "Refused a body that is not an AdmissionReview");
            plain(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

/// Runs `review` only if its deadline has not passed and no one gave up on
/// it: a job that a busy blocking pool starts late never starts at all (the
/// API server stopped waiting; the work would only delay the next review).
/// The clock is read here, on the thread that would do the work, so a job
/// started after the deadline but before the waiter noticed is skipped too.
fn unless_late<T>(
    deadline: Instant,
    cancelled: &AtomicBool,
    review: impl FnOnce() -> T,
) -> Option<T> {
    if cancelled.load(Ordering::Relaxed) || Instant::now() >= deadline {
        return None;
    }
    Some(review())
}

/// Logs and counts a review; its answer's bytes.
fn respond(state: &AppState, reviewed: Reviewed, seconds: f64) -> Bytes {
    // The review's fields go into its span for the one event below. An
    // allowed review's event is at debug: when no filter can enable debug
    // anywhere (the default `info`), nothing would ever show them, and
    // formatting them into the span costs more than the rest of this
    // function.
    let level = match reviewed.decision {
        Decision::Denied(_) => tracing::Level::INFO,
        Decision::Invalid(_) => tracing::Level::WARN,
        Decision::Patched(_) | Decision::Unchanged(_) => tracing::Level::DEBUG,
    };
    if level <= tracing::level_filters::LevelFilter::current() {
        let span = tracing::Span::current();
        let s = &reviewed.subject;
        span.record("uid", &*clip(&s.uid));
        span.record("namespace", &*clip(&s.namespace));
        span.record("pod", &*clip(&s.name));
        span.record("operation", &*clip(&s.operation));
        span.record("dry_run", s.dry_run);
    }
    let outcome = reviewed.decision.outcome().as_str();
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
                operations = p.operations(),
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
    reviewed.response
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A review whose deadline passed before a blocking thread picked it up
    /// never starts; nor one its waiter gave up on; an on-time one does.
    #[test]
    fn a_review_whose_deadline_passed_before_it_starts_never_starts() {
        let started = std::cell::Cell::new(0);
        let review = || started.set(started.get() + 1);
        let now = Instant::now();
        let fresh = AtomicBool::new(false);
        assert_eq!(unless_late(now, &fresh, review), None, "at the deadline");
        let past = now.checked_sub(Duration::from_millis(1)).unwrap_or(now);
        assert_eq!(unless_late(past, &fresh, review), None, "after it");
        let later = now + Duration::from_secs(3600);
        let given_up = AtomicBool::new(true);
        assert_eq!(unless_late(later, &given_up, review), None, "given up");
        assert_eq!(started.get(), 0, "no late review started");
        assert_eq!(unless_late(later, &fresh, review), Some(()), "on time");
        assert_eq!(started.get(), 1);
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

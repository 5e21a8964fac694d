//! Accepting and serving connections on the webhook's two ports, bounded so
//! that no client can hold the server's memory, descriptors or attention:
//!
//! - at most `max_connections` open per port; past it the accept loop waits
//!   (new clients queue in the kernel backlog), logs once per burst and
//!   counts each wait;
//! - at most a peer's share (`--max-connections-per-peer`) open from one
//!   source address, plus what it may borrow that no other peer can claim
//!   (see `peers`): a connection over that is closed right after accept,
//!   before its TLS handshake (a reset, so no TIME_WAIT is left here), and
//!   counted; it never waits ahead of other peers' connections. Each
//!   accepted connection hands its peer's share of the body budget to its
//!   requests (see `peers`). A borrowed connection recalled for a peer
//!   within its share is closed: during its handshake at once, after it
//!   gracefully (a request in progress is answered first);
//! - the TLS handshake *and* the first request's headers must arrive within
//!   `header_read_timeout` of the connection being accepted;
//! - a connection with no request in progress for `idle_timeout` is closed,
//!   HTTP/1.1 keep-alive and HTTP/2 alike (an HTTP/2 client that sends only
//!   its preface is closed at the header-read deadline);
//! - a connection with an answer its client has not taken by that review's
//!   deadline is closed at once (an answer holds its review slot until it
//!   is written, see [`Answers`]);
//! - HTTP/2 flow-control windows, streams, headers and send buffers are
//!   small and fixed, so a connection buffers a bounded amount whatever the
//!   client does; HTTP/1 read-ahead is capped the same way, and so are the
//!   kernel's socket buffers under each connection
//!   ([`SOCKET_BUFFER_BYTES`], set where the port is bound);
//! - running out of descriptors on `accept` is logged once per burst,
//!   counted, and retried after a pause instead of spinning.
//!
//! Request bodies are read by the handler against a byte budget shared by
//! every connection (see `intake`), not here.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::metrics::{Closed, Metrics, Port, Refused};
use super::peers::{PeerTable, Recall, Seat, Share};

/// HTTP/1 read buffer and HTTP/2 stream window: one frame of a large body
/// at a time. hyper's default read-ahead (~400 KiB) was most of the memory
/// with hundreds of connections (measured in tests/soak.rs).
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Socket read size under TLS. rustls asks the socket for 4 KiB at a time,
/// so an 8 KB review took two `recvfrom` calls; reading through a buffer of
/// one whole TLS record (16 KiB of plaintext plus its header and tag) takes
/// any review of up to 16 KiB in one. The buffer is part of each
/// connection's memory (see the hardening page's memory bound).
pub const TLS_READ_BUFFER_BYTES: usize = 16 * 1024 + 256;
/// The kernel's socket buffers of each connection, asked for on the
/// listening socket (its connections inherit them): Linux doubles the
/// figure for its bookkeeping, so a connection holds at most 64 KiB in each
/// direction in the kernel, charged to the pod's memory like our own. Left
/// to autotuning they grow to the host's `tcp_wmem`/`tcp_rmem` maximum
/// (several MiB): a client that did not read its answer could park
/// the whole answer there (about 0.7 MiB each, measured), 128 of them more
/// than the memory limit's margin. 64 KiB takes a 7.8 KB review in one
/// window, and a 4 MiB body in 64 to 128 round trips (the window offered
/// is a half or more of the buffer): well under a second on a cluster
/// network.
pub const SOCKET_BUFFER_BYTES: u32 = 32 * 1024;
/// HTTP/2 connection window: what one connection may have received and not
/// yet handed to a handler, all streams together.
pub const H2_CONNECTION_WINDOW_BYTES: u32 = 128 * 1024;
/// Streams one HTTP/2 connection may have open at once (the API server
/// multiplexes its webhook calls over few connections).
pub const H2_MAX_STREAMS: u32 = 32;
/// Largest header block accepted, either protocol (an AdmissionReview POST
/// has a handful of short headers).
pub const MAX_HEADER_BYTES: u32 = 32 * 1024;
/// How long a closing connection may take to say goodbye (GOAWAY, TLS
/// close_notify) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after `accept` fails (out of descriptors): long enough not to spin,
/// short enough that a freed descriptor is soon used.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections the kernel may hold completed for `accept` (capped by the
/// host's `net.core.somaxconn`). Larger than the usual 128: a peer
/// reconnecting in a loop fills the backlog between two accepts, and an
/// API server's connection that finds it full has its SYN dropped and
/// retried a second later.
pub const LISTEN_BACKLOG: u32 = 1024;

/// At most one log line per this long about failing accepts.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(30);

/// The bounds of one port.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Deadline, from accept, for the TLS handshake and the first request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// A review's deadline: how long a recalled connection's requests in
    /// progress may take to be answered before it is dropped.
    pub request_timeout: Duration,
    /// What one source address may hold.
    pub peer_share: Share,
}

/// One listening port and how to serve it.
pub struct Listener {
    /// The bound socket.
    pub socket: TcpListener,
    /// TLS for the webhook port; `None` for the plain metrics port.
    pub tls: Option<TlsAcceptor>,
    /// The routes.
    pub app: Router,
    /// Its bounds.
    pub limits: ConnLimits,
    /// Which port, for metrics and logs.
    pub port: Port,
}

/// Serves `listener` until `stop` turns true, then closes every connection
/// gracefully, waiting at most `drain` for requests in progress.
pub async fn serve(
    listener: Listener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let Listener {
        socket,
        tls,
        app,
        limits,
        port,
    } = listener;
    let builder = Arc::new(http_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let peers = PeerTable::new(limits.peer_share, limits.max_connections);
    let mut tasks = JoinSet::new();
    let mut at_limit = false;
    let mut accept_failed_logged: Option<Instant> = None;
    let mut refused_logged: Option<Instant> = None;
    loop {
        while tasks.try_join_next().is_some() {}
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.connection_limited(port);
                if !at_limit {
                    tracing::warn!(
                        port = port.as_str(),
                        max = limits.max_connections,
                        "Connection limit reached: new connections wait in the backlog until one closes (--max-connections)"
                    );
                    at_limit = true;
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        // A burst is over once more than a quarter of the slots are free.
        if at_limit && slots.available_permits() > limits.max_connections / 4 {
            at_limit = false;
        }
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                metrics.accept_error(port, exhausted);
                // Failures come in bursts (a descriptor freed, taken
                // again): one line per burst, the counter has them all.
                if accept_failed_logged.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                    if exhausted {
                        tracing::error!(port = port.as_str(), error = %e, "Out of file descriptors: cannot accept connections until some close (raise the open-files limit or lower --max-connections)");
                    } else {
                        tracing::warn!(port = port.as_str(), error = %e, "Accepting a connection failed");
                    }
                    accept_failed_logged = Some(Instant::now());
                }
                drop(slot);
                tokio::select! {
                    _ = sleep(ACCEPT_BACKOFF) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let Some(seat) = peers.admit(peer.ip()) else {
            // Over its share: refused at once, so it never holds a slot or
            // waits ahead of anyone. A reset rather than a FIN: a peer that
            // reconnects in a loop leaves no TIME_WAIT sockets here.
            // Counted before the peer can see it closed.
            metrics.connection_refused(port, Refused::PeerShare);
            let _ = tcp.set_zero_linger();
            drop(tcp);
            drop(slot);
            if refused_logged.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                tracing::warn!(
                    port = port.as_str(),
                    %peer,
                    share = limits.peer_share.connections,
                    "A peer holds its share of connections and the free ones are other peers' shares: refusing its new ones until some close (--max-connections-per-peer; further refusals are only counted for a while)"
                );
                refused_logged = Some(Instant::now());
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            tcp,
            peer,
            place: Place { seat, _slot: slot },
            tls: tls.clone(),
            app: app.clone(),
            builder: builder.clone(),
            limits,
            port,
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        tasks.spawn(conn.run());
    }
    drop(socket);
    // Every connection has seen `stop` and is closing gracefully; the ones
    // still busy after `drain` are dropped.
    let drained = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!(
            port = port.as_str(),
            open = tasks.len(),
            ?drain,
            "Drain timeout: closing the connections still open"
        );
        tasks.abort_all();
    }
}

fn http_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_read_timeout))
        .max_buf_size(READ_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(READ_BUFFER_BYTES as u32)
        .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES)
        .adaptive_window(false)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES)
        .max_send_buf_size(READ_BUFFER_BYTES)
        .max_pending_accept_reset_streams(Some(H2_MAX_STREAMS as usize))
        .max_local_error_reset_streams(Some(1024));
    builder
}

/// One accepted connection.
struct Conn {
    tcp: TcpStream,
    peer: SocketAddr,
    /// Its place in its peer's share and in the port, given back on close.
    place: Place,
    tls: Option<TlsAcceptor>,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnLimits,
    port: Port,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
}

/// A connection's place: its peer's seat, then its slot in the port. Fields
/// drop in this order, so by the time the accept loop can take the freed
/// slot, the peer's count is already down (else a peer at exactly its share
/// could be refused while the port had room for it).
struct Place {
    seat: Seat,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    async fn run(self) {
        let Conn {
            tcp,
            peer,
            place,
            tls,
            app,
            builder,
            limits,
            port,
            metrics,
            stop,
        } = self;
        let _open = metrics.connection_opened(port);
        let first_deadline = Instant::now() + limits.header_read_timeout;
        let recall = place.seat.recall();
        let activity = Arc::new(Activity::new(recall.clone()));
        let room = place.seat.room();
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                let busy = activity.begin();
                // The peer's share of the body budget and the review slots
                // goes with each request (an Arc: no lookup per request),
                // and the connection's watch on its unsent answers.
                req.extensions_mut().insert(room.clone());
                req.extensions_mut().insert(Answers(activity.clone()));
                let app = app.clone();
                async move {
                    let response = app.oneshot(req).await;
                    drop(busy);
                    response
                }
            })
        };
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(acceptor) => match tokio::select! {
                handshake = timeout_at(
                    first_deadline,
                    acceptor.accept(BufReader::with_capacity(TLS_READ_BUFFER_BYTES, tcp)),
                ) => handshake,
                () = recall.recalled() => {
                    // Nothing asked yet: nothing to answer first.
                    metrics.connection_closed(port, Closed::Reclaimed);
                    tracing::debug!(%peer, "Closing a borrowed connection, recalled during its handshake for a peer within its share");
                    return;
                }
            } {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => {
                    metrics.connection_closed(port, Closed::Handshake);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.connection_closed(port, Closed::HeaderTimeout);
                    tracing::debug!(%peer, "TLS handshake not finished within --header-read-timeout");
                    return;
                }
            },
        };
        let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
        let mut stop = stop;
        // Serve until the connection ends, idles past its deadline, or the
        // server stops; the last two close it gracefully, then drop it.
        let mut closing: Option<Instant> = None;
        loop {
            let hard_stop = closing.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "Connection ended with an error");
                    }
                    return;
                }
                why = activity.expired(first_deadline, limits.idle_timeout), if closing.is_none() => {
                    metrics.connection_closed(port, why);
                    if why == Closed::AnswerTimeout {
                        // Not gracefully: that would wait for the very
                        // write the client is not taking.
                        tracing::warn!(
                            %peer,
                            "Closing a connection whose client did not take its answer by the review's deadline"
                        );
                        return;
                    }
                    tracing::debug!(%peer, reason = why.as_str(), "Closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
                () = recall.recalled(), if closing.is_none() => {
                    metrics.connection_closed(port, Closed::Reclaimed);
                    tracing::debug!(%peer, "Closing a borrowed connection, recalled for a peer within its share");
                    conn.as_mut().graceful_shutdown();
                    // A request in progress is answered within its deadline.
                    closing = Some(Instant::now() + limits.request_timeout + CLOSE_GRACE);
                }
                _ = stop.wait_for(|s| *s), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    // The drain deadline of `serve` bounds this one.
                    closing = Some(Instant::now() + Duration::from_secs(3600));
                }
                _ = sleep_until(hard_stop), if closing.is_some() => return,
            }
        }
    }
}

/// The byte stream under a connection: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Whether a connection has a request in progress, since when it has had
/// none, and the deadlines of its answers not yet written.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when an answer starts waiting to be written, whose deadline
    /// may come before the one [`Activity::expired`] sleeps until.
    answer_waiting: Notify,
    /// Told when the connection is idle between requests, which makes it
    /// the last choice for a recall.
    recall: Arc<Recall>,
}

struct ActivityState {
    in_progress: usize,
    served: bool,
    idle_since: Instant,
    /// Each unsent answer's id and deadline (at most one a stream: 1 on
    /// HTTP/1.1, [`H2_MAX_STREAMS`] on HTTP/2).
    unsent: Vec<(u64, Instant)>,
    next_answer: u64,
}

impl ActivityState {
    /// When the connection is next due to close, and why (`None`: not due;
    /// look again then).
    fn next_close(&self, first_deadline: Instant, idle: Duration) -> (Instant, Option<Closed>) {
        let (at, why) = if self.in_progress > 0 {
            (Instant::now() + idle, None)
        } else if !self.served {
            (first_deadline, Some(Closed::HeaderTimeout))
        } else {
            (self.idle_since + idle, Some(Closed::Idle))
        };
        match self.unsent.iter().map(|(_, d)| *d).min() {
            Some(answer) if answer <= at => (answer, Some(Closed::AnswerTimeout)),
            _ => (at, why),
        }
    }
}

impl Activity {
    fn new(recall: Arc<Recall>) -> Activity {
        Activity {
            recall,
            state: Mutex::new(ActivityState {
                in_progress: 0,
                served: false,
                idle_since: Instant::now(),
                unsent: Vec::new(),
                next_answer: 0,
            }),
            answer_waiting: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state is counters, instants and a list pushed and removed
        // whole: a panic elsewhere cannot leave it half-written, so a
        // poisoned lock is still good.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn begin(self: &Arc<Self>) -> BusyOwned {
        let mut s = self.lock();
        s.in_progress += 1;
        self.recall.set_idle(false);
        drop(s);
        BusyOwned(self.clone())
    }

    /// Resolves once the connection is due to close: an answer unsent past
    /// its deadline, or no request in progress past `first_deadline`
    /// (before any request) or `idle` (after the last one ended).
    async fn expired(&self, first_deadline: Instant, idle: Duration) -> Closed {
        loop {
            let (deadline, why) = self.lock().next_close(first_deadline, idle);
            match why {
                Some(why) if Instant::now() >= deadline => return why,
                _ => {
                    // `notify_one` keeps a wake-up for a waiter still to
                    // come: an answer registered between the look above
                    // and this wait is not missed.
                    tokio::select! {
                        () = sleep_until(deadline) => {}
                        () = self.answer_waiting.notified() => {}
                    }
                }
            }
        }
    }
}

/// Marks a request in progress until dropped.
struct BusyOwned(Arc<Activity>);

impl Drop for BusyOwned {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_progress = s.in_progress.saturating_sub(1);
        s.served = true;
        s.idle_since = Instant::now();
        if s.in_progress == 0 {
            self.0.recall.set_idle(true);
        }
    }
}

/// A connection's watch on its answers not yet written, handed to each
/// request. An answer holds its review slot, and its bytes, until the
/// client has taken it ([`Unsent`] travels with the bytes); a client that
/// does not take it by the review's deadline (the API server has given up
/// by then) has its connection closed, which frees both. So answers stay
/// within `--max-in-flight`, and a client that never reads cannot hold one
/// past its deadline.
#[derive(Clone)]
pub struct Answers(Arc<Activity>);

impl Answers {
    /// Registers an answer due to be written by `deadline`.
    pub fn unsent(&self, deadline: Instant) -> Unsent {
        let id = {
            let mut s = self.0.lock();
            let id = s.next_answer;
            s.next_answer += 1;
            s.unsent.push((id, deadline));
            id
        };
        self.0.answer_waiting.notify_one();
        Unsent {
            activity: self.0.clone(),
            id,
        }
    }
}

/// An answer not yet written, until dropped (with the answer's bytes).
pub struct Unsent {
    activity: Arc<Activity>,
    id: u64,
}

impl Drop for Unsent {
    fn drop(&mut self) {
        self.activity.lock().unsent.retain(|(id, _)| *id != self.id);
    }
}

/// Raises the soft open-files limit to the hard one (containers often start
/// with 1,024), and returns the limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

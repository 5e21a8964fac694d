//! Hostile input against the real server, for what only the transport
//! decides: framing, slow clients, limits, TLS, HTTP/2, body sizes. TLS on
//! 127.0.0.1:0, started in-process with `serve::start`, a 2 s request
//! timeout and a 1 s header-read timeout (the body limit stays at its 4 MiB
//! default). The cases that depend only on `review_with`'s answer to a body
//! are in `review_cases.rs`.
//!
//! Each case pins the exact answer: the HTTP status and the text of a
//! 4xx/5xx body. After each case the server must still answer a good review
//! and hold nothing in flight. Times are printed, never asserted: a timeout
//! in a test only guards against a hang.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, serve_args_for, Volume, REVIEW};
use persistence_webhook::serve::{self, Running};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The uid of [`REVIEW`], the real kube-apiserver capture (pod
/// `webhook-pod` in `default`, one container `main`, no annotation).
const UID: &str = "ecb6a916-9f88-4324-86e2-32ca92226e38";

/// The hostile-input config, shared with the other hostile-input file.
const CONFIG: &str = include_str!("common/hostile.yaml");

/// The real server, a client that trusts only its CA, and a raw TLS
/// connector for the cases reqwest cannot express.
struct Server {
    running: Running,
    client: reqwest::Client,
    issued: persistence_webhook::certs::Issued,
    raw: tokio_rustls::TlsConnector,
    _files: Volume,
}

impl Server {
    /// The server with a 2 s request timeout and a 1 s header-read timeout.
    async fn start() -> Server {
        Server::start_with(&["--request-timeout", "2s", "--header-read-timeout", "1s"]).await
    }

    /// The server with these flags.
    async fn start_with(flags: &[&str]) -> Server {
        let issued = common::pki();
        let files = Volume::serving(CONFIG, &issued);
        let args = serve_args_for(&files, flags);
        let running = serve::start(args).await.expect("the server starts");

        let client = common::client(&[&issued]);
        let raw = common::tls_connector(&issued, &[b"http/1.1"]);

        Server {
            running,
            client,
            issued,
            raw,
            _files: files,
        }
    }

    /// The server with a port of `max` connections and a share of `share`
    /// a peer. Silent connections that are let in stay open for the whole
    /// test (a 60 s header deadline, and idle deadline): any that closes was
    /// refused or recalled, not timed out.
    async fn start_shared(max: usize, share: usize) -> Server {
        Server::start_with(&[
            "--request-timeout",
            "2s",
            "--header-read-timeout",
            "60s",
            "--idle-timeout",
            "60s",
            "--max-connections",
            &max.to_string(),
            "--max-connections-per-peer",
            &share.to_string(),
        ])
        .await
    }

    /// A metric's value by name (-1 when absent), read by a closure that
    /// outlives borrows of the server.
    fn metric(&self) -> impl Fn(&str) -> f64 + Send + Sync + 'static {
        let metrics = self.running.state.metrics.clone();
        move |name: &str| common::metric(&metrics.render(), name).unwrap_or(-1.0)
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/mutate", self.running.addr.port())
    }

    fn in_flight(&self) -> i64 {
        self.running.state.metrics.in_flight.get()
    }

    /// POSTs a body as JSON; the HTTP status and the body text.
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.post_over(&self.client, body).await
    }

    /// The same over `client`'s connections.
    async fn post_over(
        &self,
        client: &reqwest::Client,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let resp = client
            .post(self.url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("a response body"))
    }

    /// POSTs an AdmissionReview that must be answered with one (HTTP 200).
    async fn review(&self, body: impl Into<reqwest::Body>) -> Value {
        self.review_over(&self.client, body).await
    }

    /// The same over `client`'s connections (kept alive between reviews).
    async fn review_over(&self, client: &reqwest::Client, body: impl Into<reqwest::Body>) -> Value {
        let (status, text) = self.post_over(client, body).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("an AdmissionReview answer")
    }

    /// A raw HTTP/1.1-over-TLS connection.
    async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.running.addr)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        self.raw.connect(name, tcp).await.expect("TLS handshake")
    }

    /// Sends raw bytes over HTTP/1.1 and TLS and never more: what comes back
    /// until the server closes. Closing is the behaviour under test (the
    /// server does not wait for more); the timeout only guards against a hang.
    async fn exchange(&self, request: &[u8]) -> String {
        let mut tls = self.raw_tls().await;
        tls.write_all(request).await.expect("write");
        tls.flush().await.expect("flush");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(common::HANG, tls.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes without waiting for more bytes");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Nothing is left in flight and a good review is answered (patched).
    async fn assert_responsive(&self, after: &str) {
        eventually(&format!("nothing in flight after {after}"), || {
            std::future::ready(self.in_flight() == 0)
        })
        .await;
        let answer = self.review(REVIEW).await;
        assert_eq!(answer["response"]["uid"], UID, "after {after}");
        assert_eq!(answer["response"]["allowed"], true, "after {after}");
        assert_eq!(
            answer["response"]["patchType"], "JSONPatch",
            "after {after}"
        );
    }

    async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let s = Server::start().await;
    let padded = |len: usize| {
        let mut body = REVIEW.to_vec();
        body.resize(len, b' ');
        body
    };

    // Exactly the limit is read and reviewed; one byte more is not.
    let answer = s.review(padded(LIMIT)).await;
    assert!(common::patch_of(&answer).is_some_and(|ops| !ops.is_empty()));
    let (status, text) = s.post(padded(LIMIT + 1)).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        text,
        "the body is larger than the limit of 4194304 bytes (--max-body-bytes)\n"
    );
    s.assert_responsive("the limit plus one byte").await;

    // 10 MiB with a Content-Length.
    let (status, text) = s.post(padded(10 * 1024 * 1024)).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        text,
        "the body is larger than the limit of 4194304 bytes (--max-body-bytes)\n"
    );
    s.assert_responsive("10 MiB with a Content-Length").await;

    // 10 MiB streamed with no length announced.
    let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024]));
    let stream = futures_util::stream::iter(chunks);
    let (status, text) = s.post(reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        text,
        "the body is larger than the limit of 4194304 bytes (--max-body-bytes)\n"
    );
    s.assert_responsive("10 MiB streamed").await;
    s.stop().await;
}

/// HTTP/1.1 request head for a body of `len` bytes.
fn head(len: usize) -> String {
    format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_mid_stream_is_dropped() {
    let s = Server::start().await;
    let half = &REVIEW[..REVIEW.len() / 2];

    // The client closes its side (TLS close_notify, then FIN) after half the
    // announced body: the server gives up reading and says so.
    let mut tls = s.raw_tls().await;
    tls.write_all(head(REVIEW.len()).as_bytes())
        .await
        .expect("head");
    tls.write_all(half).await.expect("half the body");
    tls.flush().await.expect("flush");
    eventually("the server is reading the body", || {
        std::future::ready(s.in_flight() == 1)
    })
    .await;
    tls.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("the server does not hang on a truncated body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{read:?}: {answer}"
    );
    assert!(
        answer.ends_with("the body could not be read: error reading a body from connection\n"),
        "{answer}"
    );
    s.assert_responsive("a body closed half way").await;

    // The client vanishes (the socket is dropped) after half the body.
    let mut tls = s.raw_tls().await;
    tls.write_all(head(REVIEW.len()).as_bytes())
        .await
        .expect("head");
    tls.write_all(half).await.expect("half the body");
    tls.flush().await.expect("flush");
    eventually("the server is reading the body", || {
        std::future::ready(s.in_flight() == 1)
    })
    .await;
    drop(tls);
    s.assert_responsive("a client that vanished half way").await;
    s.stop().await;
}

/// An answer holds its review slot until its client has taken it, and a
/// client that does not take it by the review's deadline has its
/// connection closed. Before, the slot was given back as soon as the
/// answer was computed, so a client that never read could hold answers
/// (up to 4/3 of `--max-patch-bytes` each) on every connection and stream,
/// outside `--max-in-flight` and the memory bound.
///
/// One slot. An HTTP/2 client that grants 1 KiB of window and never reads
/// sends a review whose answer is about 0.7 MB, with a 1 s deadline: its
/// review is done (nothing in flight) but its slot stays taken. A good
/// review (2 s deadline) waits for that slot, and is answered only once
/// the silent client's connection has been closed for its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_not_taken_holds_its_slot_until_its_deadline_closes_the_connection() {
    let s = Server::start_with(&[
        "--request-timeout",
        "2s",
        "--header-read-timeout",
        "1s",
        "--max-in-flight",
        "1",
    ])
    .await;
    let big = big_answer(&s).await;
    assert_eq!(answers_cut(&s), Some(0.0));

    let silent = common::client_h2_window(&[&s.issued], 1024, LOOPBACK);
    let unread = silent
        .post(format!("{}?timeout=1s", s.url()))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("the answer's head arrives");
    assert_eq!(unread.status(), 200);
    assert_eq!(
        slot_held_then_a_good_review(
            &s,
            "the silent client's review is done, its slot still taken",
            0
        )
        .await,
        Some(1.0),
        "the good review waited for the slot until the silent client's connection was closed"
    );
    assert!(
        unread.bytes().await.is_err(),
        "the silent client's answer was cut off with its connection"
    );
    s.assert_responsive("an answer not taken").await;
    s.stop().await;
}

/// A review whose answer is about 0.7 MB (1,000 bare containers), checked
/// by a client that reads it: a patch, and large.
async fn big_answer(s: &Server) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(REVIEW).expect("the capture is JSON");
    review["request"]["object"]["spec"]["containers"] = (0..1_000)
        .map(|i| serde_json::json!({"name": format!("c{i}"), "image": "i"}))
        .collect();
    let big = serde_json::to_vec(&review).expect("JSON");
    let answer = s.review(big.clone()).await;
    let patch = answer["response"]["patch"]
        .as_str()
        .unwrap_or_default()
        .len();
    assert!(
        patch > 700_000,
        "the answer carries {patch} bytes of base64"
    );
    big
}

/// Answers a client does not read wait in the server's own bounded buffers
/// (holding their review slots), not in the kernel's: each connection's
/// socket send buffer is capped (`SOCKET_BUFFER_BYTES`, doubled by Linux).
/// Before the cap, the kernel's send buffer grew to fit each 0.7 MB answer
/// on loopback (22 MiB for 32 connections, measured with `ss -tm`), memory
/// charged to the pod but outside the written bound, and the answers'
/// slots were freed as if they had been read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_not_read_stay_in_bounded_buffers_not_the_kernels() {
    const CLIENTS: usize = 8;
    let s = Server::start_with(&["--request-timeout", "3s", "--header-read-timeout", "1s"]).await;
    let big = big_answer(&s).await;
    let request = [head(big.len()).into_bytes(), big].concat();
    let mut silent = Vec::new();
    for _ in 0..CLIENTS {
        let mut tls = s.raw_tls().await;
        tls.write_all(&request).await.expect("write");
        tls.flush().await.expect("flush");
        silent.push(tls);
    }
    eventually(
        "every answer computed and still held, unread, by its slot",
        || {
            let m = &s.running.state.metrics;
            std::future::ready(m.in_flight.get() == 0 && m.slots_in_use.get() == CLIENTS as i64)
        },
    )
    .await;
    // The silent connections, once each has had its answer's first bytes
    // written (the server's client has a kept-alive one too, with nothing
    // queued).
    let queued = || -> Vec<u64> {
        kernel_send_queues(s.running.addr.port())
            .into_iter()
            .filter(|q| *q > 0)
            .collect()
    };
    eventually("the kernel holds the start of every answer", || {
        std::future::ready(queued().len() == CLIENTS)
    })
    .await;
    let queues = queued();
    // Linux doubles the figure asked for, and may queue one more segment
    // (up to 64 KiB) past it.
    let cap = 2 * u64::from(persistence_webhook::server::listener::SOCKET_BUFFER_BYTES) + 64 * 1024;
    assert!(
        queues.iter().all(|q| *q <= cap),
        "the kernel holds at most {cap} bytes of each answer: {queues:?}"
    );
    eprintln!(
        "unread answers: the kernel holds {} KiB over {CLIENTS} connections (at most {} KiB each)",
        queues.iter().sum::<u64>() / 1024,
        cap / 1024
    );
    eventually("the unread answers are cut at their deadline", || {
        std::future::ready(answers_cut(&s) == Some(CLIENTS as f64))
    })
    .await;
    drop(silent);
    s.assert_responsive("answers not read").await;
    s.stop().await;
}

/// What the kernel holds unsent or unacknowledged on each established IPv4
/// connection whose local port is `port` (`tx_queue` of /proc/net/tcp).
fn kernel_send_queues(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *state == "01")
                .then(|| u64::from_str_radix(queues.split(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

/// Connections closed for an answer their client did not take.
fn answers_cut(s: &Server) -> Option<f64> {
    common::metric(
        &s.running.state.metrics.render(),
        "persistence_webhook_connections_closed_total{port=\"webhook\",reason=\"answer-timeout\"}",
    )
}

/// Waits until one slot is taken with `in_flight` reviews in flight (a
/// silent client's), then has a good review answered (patched); the
/// connections closed for an answer not taken by then.
async fn slot_held_then_a_good_review(s: &Server, what: &str, in_flight: i64) -> Option<f64> {
    eventually(what, || {
        let m = &s.running.state.metrics;
        std::future::ready(m.in_flight.get() == in_flight && m.slots_in_use.get() == 1)
    })
    .await;
    let answer = s.review(REVIEW).await;
    assert_eq!(answer["response"]["uid"], UID);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    answers_cut(s)
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A peer that does not read its answers holds at most its share of the
/// review slots (the fraction of `--max-in-flight` that its connections
/// are of the port's, at least one), so it cannot make another peer wait
/// for a slot. Two slots, a share of one: the silent peer (127.0.0.2, an
/// HTTP/2 client granting 1 KiB of window) sends two reviews with large
/// answers on its connection and reads neither; the first holds its one
/// slot, the second waits for it. Another peer's review takes the other
/// slot at once: it is answered while the silent peer's connection is
/// still open (without the share, both slots were the silent peer's and
/// the good review waited for the 3 s deadline to close that connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_its_answers_holds_only_its_share_of_the_slots() {
    let s = Server::start_with(&[
        "--request-timeout",
        "3s",
        "--header-read-timeout",
        "1s",
        "--max-in-flight",
        "2",
        "--max-connections",
        "16",
        "--max-connections-per-peer",
        "4",
    ])
    .await;
    let big = big_answer(&s).await;
    let from: IpAddr = "127.0.0.2".parse().expect("an address");
    let silent = common::client_h2_window(&[&s.issued], 1024, from);
    let unread: Vec<_> = (0..2)
        .map(|_| {
            let request = silent
                .post(s.url())
                .header("content-type", "application/json")
                .body(big.clone());
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    assert_eq!(
        slot_held_then_a_good_review(
            &s,
            "one silent review holds the peer's slot, the other waits for it",
            1
        )
        .await,
        Some(0.0),
        "answered while the silent peer still held its answer"
    );
    eventually(
        "the silent peer's connection is closed at its deadline",
        || std::future::ready(answers_cut(&s) == Some(1.0)),
    )
    .await;
    for r in unread {
        let _ = r.await;
    }
    s.assert_responsive("a peer that does not read its answers")
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let s = Arc::new(Server::start().await);

    // A body at one byte a second: cut with 408 at the 2 s body deadline.
    let slow_body = futures_util::stream::unfold(0usize, |i| async move {
        if i > 0 {
            // Pacing of the slow client, not a wait for a condition.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        (i < REVIEW.len()).then(|| (Ok::<_, std::io::Error>(vec![REVIEW[i]]), i + 1))
    });
    let slow = {
        let s = s.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = s
                .client
                .post(s.url())
                .header("content-type", "application/json")
                .header("content-length", REVIEW.len().to_string())
                .body(reqwest::Body::wrap_stream(slow_body))
                .send()
                .await
                .expect("the slow client gets an answer");
            let status = resp.status().as_u16();
            let text = resp.text().await.expect("body");
            (status, text, started.elapsed())
        })
    };

    // Headers at one byte a second over HTTP/1.1: the 1 s header-read
    // timeout closes the connection without an answer.
    let slow_head = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut tls = s.raw_tls().await;
            let started = Instant::now();
            let (mut sent, mut answer, mut ended) = (0, Vec::new(), None);
            for byte in head(REVIEW.len()).bytes() {
                if let Err(e) = tls.write_all(&[byte]).await {
                    ended = Some(e.kind());
                    break;
                }
                if let Err(e) = tls.flush().await {
                    ended = Some(e.kind());
                    break;
                }
                sent += 1;
                // The read doubles as the one-second pacing.
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
                    Err(_) => {}
                    Ok(Ok(n)) => {
                        answer.extend_from_slice(&buf[..n]);
                        break;
                    }
                    Ok(Err(e)) => {
                        ended = Some(e.kind());
                        break;
                    }
                }
            }
            (sent, answer, ended, started.elapsed())
        })
    };

    // A TCP client that never starts the TLS handshake.
    let silent = {
        let addr = s.running.addr;
        tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            let started = Instant::now();
            let mut buf = Vec::new();
            let read = tokio::time::timeout(common::HANG, tcp.read_to_end(&mut buf))
                .await
                .expect("the silent client is disconnected");
            (read.map_err(|e| e.kind()), buf.len(), started.elapsed())
        })
    };

    // Meanwhile, other clients are answered.
    eventually("the slow body is being read", || {
        std::future::ready(s.in_flight() >= 1)
    })
    .await;
    for _ in 0..3 {
        let answer = s.review(REVIEW).await;
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["uid"], UID);
    }
    assert!(!slow.is_finished(), "the slow body is still being sent");

    let (status, text, took) = slow.await.expect("slow body task");
    assert_eq!(status, 408, "{text}");
    // One byte a second for 2 s of the client's own time (the server's time
    // between reads does not count): 2 or 3 bytes, as the pacing falls.
    let prefix = "the review did not finish within 2s (--body-read-timeout): the body did not arrive in time (";
    let received = text
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(" bytes received)\n"))
        .and_then(|n| n.parse::<usize>().ok());
    assert!(matches!(received, Some(2 | 3)), "{text}");
    eprintln!("slow body cut after {took:?}");

    // Dropped without an HTTP answer and without a TLS close_notify: the
    // read sees the FIN, or a reset when a paced byte crossed the close.
    let (sent, answer, ended, took) = slow_head.await.expect("slow head task");
    assert_eq!(String::from_utf8_lossy(&answer), "", "no HTTP answer");
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    assert!(
        matches!(ended, Some(UnexpectedEof | ConnectionReset | BrokenPipe)),
        "{ended:?}"
    );
    assert!((1..=3).contains(&sent), "{sent} bytes of the head sent");
    eprintln!("slow head closed after {took:?}");

    let (read, bytes, took) = silent.await.expect("silent task");
    assert_eq!((read, bytes), (Ok(0), 0));
    eprintln!("silent client closed after {took:?}");

    s.assert_responsive("slow clients").await;
    let s = Arc::into_inner(s).expect("the tasks are done");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_framing_is_refused() {
    let s = Server::start().await;
    let post = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n";
    let cases = [
        (
            "a chunk size that overflows",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc"),
            "HTTP/1.1 400 Bad Request\r\n",
            "\r\n\r\nthe body could not be read: error reading a body from connection\n",
        ),
        (
            "Content-Length and Transfer-Encoding both (chunked wins, then the connection closes)",
            format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "HTTP/1.1 400 Bad Request\r\n",
            "\r\n\r\nthe body is not JSON: EOF while parsing a value at line 1 column 0\n",
        ),
        (
            "a negative Content-Length",
            format!("{post}Content-Length: -1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
            "\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            format!("{post}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"),
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
            "\r\n\r\n",
        ),
    ];
    for (what, request, starts, ends) in cases {
        let answer = s.exchange(request.as_bytes()).await;
        assert!(answer.starts_with(starts), "{what}: {answer:?}");
        assert!(answer.ends_with(ends), "{what}: {answer:?}");
        s.assert_responsive(what).await;
    }
    s.stop().await;
}

/// A Content-Length over the limit is refused before any of the body is
/// read: at once, with 413, and without inviting the body with
/// `100 Continue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_length_over_the_limit_is_413_at_once() {
    let s = Server::start().await;
    let post = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n";
    for (what, request) in [
        ("no Expect", format!("{post}\r\n")),
        (
            "Expect: 100-continue",
            format!("{post}Expect: 100-continue\r\n\r\n"),
        ),
    ] {
        // The body is never sent: an answer and a close prove it was not awaited.
        let answer = s.exchange(request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{what}: {answer:?}"
        );
        assert!(
            answer.contains("\r\n\r\nthe body is larger than the limit of"),
            "{what}: {answer:?}"
        );
        s.assert_responsive(what).await;
    }
    s.stop().await;
}

/// A TCP connection to `to` from the source address `from` (all of
/// 127.0.0.0/8 is loopback on Linux, so each address is a peer of its own).
/// A connection the server resets at once may fail here already.
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind the source address");
    socket.connect(to).await
}

/// Open connections on the webhook port.
const OPEN: &str = "persistence_webhook_connections_open{port=\"webhook\"}";

/// `n` connections from `from` to `to`, each saying nothing until the
/// server closes it (see [`silent_until_closed`]).
async fn silent_flood(
    from: IpAddr,
    to: SocketAddr,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<usize, std::io::ErrorKind>>> {
    let mut flood = Vec::new();
    for _ in 0..n {
        flood.push(tokio::spawn(silent_until_closed(
            connect_from(from, to).await,
        )));
    }
    flood
}

/// Says nothing on the connection and waits until the server closes it:
/// the bytes it sent (none, before a TLS handshake) or how it ended.
async fn silent_until_closed(tcp: std::io::Result<TcpStream>) -> Result<usize, std::io::ErrorKind> {
    let mut tcp = tcp.map_err(|e| e.kind())?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(common::HANG, tcp.read_to_end(&mut buf))
        .await
        .expect("closed by the server, or held for the whole test and aborted");
    match read {
        Ok(_) => Ok(buf.len()),
        Err(e) => Err(e.kind()),
    }
}

/// A refused connection was closed before anything was said on it: a FIN
/// or a reset, no bytes.
fn refused_before_tls(ended: &Result<usize, std::io::ErrorKind>) -> bool {
    matches!(ended, Ok(0) | Err(std::io::ErrorKind::ConnectionReset))
}

/// Fair shares per peer. One peer (127.0.0.2) opens silent TCP connections,
/// more than the port holds, keeps those let in (its share and what it may
/// borrow: the port less one share), and keeps reopening each one the
/// server closes;
/// meanwhile another peer (127.0.0.3, standing in for the API server) sends
/// reviews, each on a new TLS connection, as the API server does after an
/// idle close. Before the per-peer share, such a flood pushed an honest
/// peer's reviews past the API server's timeout; the figures come from
/// `peer_flood_figures` below, never asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_share_is_refused_while_another_keeps_reviewing() {
    const SHARE: usize = 4;
    const MAX: usize = 16;
    // Alone, the flooder borrows all the port but one share.
    const HELD: usize = MAX - SHARE;
    const FLOOD: usize = MAX + SHARE;
    const REOPENERS: usize = 4;
    const REVIEWS: usize = 20;
    let s = Server::start_shared(MAX, SHARE).await;
    let addr = s.running.addr;
    let flooder = IpAddr::from([127, 0, 0, 2]);
    let honest = IpAddr::from([127, 0, 0, 3]);
    let metric = s.metric();
    let refused =
        "persistence_webhook_connections_refused_total{port=\"webhook\",reason=\"peer-share\"}";

    // Past its share and the room it may borrow: what it may hold is let
    // in, the rest closed at once.
    let flood = silent_flood(flooder, addr, FLOOD).await;
    eventually("all but the flooder's share are closed", || {
        std::future::ready(flood.iter().filter(|t| t.is_finished()).count() >= FLOOD - HELD)
    })
    .await;
    let (closed, held): (Vec<_>, Vec<_>) = flood.into_iter().partition(|t| t.is_finished());
    for t in closed {
        let ended = t.await.expect("task");
        assert!(refused_before_tls(&ended), "{ended:?}");
    }
    assert_eq!(
        held.len(),
        HELD,
        "its share and what it may borrow are held, not closed"
    );
    eventually(
        "every refusal is counted, and the held ones are open",
        || {
            std::future::ready(
                metric(refused) == (FLOOD - HELD) as f64 && metric(OPEN) == HELD as f64,
            )
        },
    )
    .await;

    // The flooder reopens every connection the server closes, without end.
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicUsize::new(0));
    let mut reopeners = Vec::new();
    for _ in 0..REOPENERS {
        let (stop, reopened) = (stop.clone(), reopened.clone());
        reopeners.push(tokio::spawn(async move {
            // Bounded, in case the stop is never given.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ended = silent_until_closed(connect_from(flooder, addr).await).await;
                assert!(
                    refused_before_tls(&ended),
                    "a reopened connection: {ended:?}"
                );
                reopened.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    eventually("the flood of reopened connections is under way", || {
        std::future::ready(reopened.load(Ordering::Relaxed) >= REOPENERS)
    })
    .await;

    // The other peer's reviews, each on a new TLS connection, all answered.
    for i in 0..REVIEWS {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(s.issued.ca_cert_pem.as_bytes()).expect("CA"),
            )
            .local_address(honest)
            .timeout(common::HANG)
            .build()
            .expect("client");
        let resp = client
            .post(s.url())
            .header("content-type", "application/json")
            .body(REVIEW)
            .send()
            .await
            .unwrap_or_else(|e| panic!("review {i} of the honest peer: {e}"));
        assert_eq!(resp.status(), 200, "review {i}");
        let answer: Value = resp.json().await.expect("an AdmissionReview");
        assert_eq!(answer["response"]["uid"], UID, "review {i}");
        assert_eq!(answer["response"]["allowed"], true, "review {i}");
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "review {i}");
    }
    assert!(
        reopeners.iter().all(|t| !t.is_finished()),
        "the flood went on through every review"
    );

    stop.store(true, Ordering::Relaxed);
    for t in reopeners {
        t.await.expect("a reopener ends cleanly");
    }
    let reopened = reopened.load(Ordering::Relaxed);
    // Every refusal counted once, whatever its address: the metric has no
    // address label.
    eventually("every refusal is counted", || {
        std::future::ready(metric(refused) == (FLOOD - HELD + reopened) as f64)
    })
    .await;
    assert!(
        held.iter().all(|t| !t.is_finished()),
        "the held connections are still held"
    );
    eventually(
        "only the flooder's connections are open once the reviews are done",
        || std::future::ready(metric(OPEN) == HELD as f64),
    )
    .await;
    assert!(
        !metrics_page_has_address(&s.running.state.metrics.render()),
        "no metric names a peer"
    );
    eprintln!(
        "per-peer flood: {} connections refused while {REVIEWS} reviews were answered",
        FLOOD - HELD + reopened
    );

    // The flooder lets go: its held connections close, and it is a peer like
    // any other again.
    for t in held {
        t.abort();
    }
    eventually("the flooder's connections are gone", || {
        std::future::ready(metric(OPEN) == 0.0)
    })
    .await;
    let before = metric(refused);
    let again = connect_from(flooder, addr).await.expect("connected");
    eventually("the flooder's new connection is let in", || {
        std::future::ready(metric(OPEN) == 1.0)
    })
    .await;
    assert_eq!(metric(refused), before, "not refused");
    drop(again);
    s.assert_responsive("a peer over its share").await;
    s.stop().await;
}

/// What a peer lent is taken back when a peer within its share needs it.
/// Share 4 of 16: a flooder (127.0.0.2) alone holds 12 silent connections
/// (its share and all it may borrow). An API server (127.0.0.3) opens its
/// share, four keep-alive connections, the last of which takes the port's
/// last free seat; then a second API server (127.0.0.4, an HA control
/// plane) does the same. Each connection that takes the last free seat
/// recalls one of the flooder's borrowed ones, which is closed at once, so
/// every connection of both API servers is served without waiting. Before,
/// the flooder kept all 12 until its own clients let go (here, a 60 s
/// header deadline), and the second API server's connections waited in the
/// backlog that long, past the API server's 10 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_connections_are_taken_back_for_peers_within_their_shares() {
    const SHARE: usize = 4;
    const MAX: usize = 16;
    const LENT: usize = MAX - SHARE;
    let s = Server::start_shared(MAX, SHARE).await;
    let addr = s.running.addr;
    let flooder = IpAddr::from([127, 0, 0, 2]);
    let metric = s.metric();
    let reclaimed =
        "persistence_webhook_connections_closed_total{port=\"webhook\",reason=\"reclaimed\"}";

    let flood = silent_flood(flooder, addr, LENT).await;
    eventually("the flooder holds its share and all it may borrow", || {
        std::future::ready(metric(OPEN) == LENT as f64)
    })
    .await;
    assert!(flood.iter().all(|t| !t.is_finished()), "none refused");

    // Within the API server's 10 s timeout, and well short of the
    // flooder's 60 s header deadline that used to free the seats.
    const API_SERVER_TIMEOUT: Duration = Duration::from_secs(10);
    let mut api_servers = Vec::new();
    for (n, last) in [3u8, 4].into_iter().enumerate() {
        let from = IpAddr::from([127, 0, 0, last]);
        for i in 0..SHARE {
            // One client a connection: each keeps its own alive.
            let client = common::client_h1_from(&[&s.issued], from);
            let answer = tokio::time::timeout(API_SERVER_TIMEOUT, s.review_over(&client, REVIEW))
                .await
                .unwrap_or_else(|_| panic!("API server {from}, connection {i}: no answer in 10 s"));
            assert_eq!(answer["response"]["uid"], UID, "{from} {i}");
            api_servers.push(client);
        }
        // The first API server's last connection recalled one; each of the
        // second's, four.
        let recalls = 1 + SHARE * n;
        eventually("each recall counted once its connection is closed", || {
            std::future::ready(metric(reclaimed) == recalls as f64)
        })
        .await;
        eventually(
            "the recalled connections are closed, before any byte",
            || std::future::ready(flood.iter().filter(|t| t.is_finished()).count() == recalls),
        )
        .await;
    }
    let (closed, held): (Vec<_>, Vec<_>) = flood.into_iter().partition(|t| t.is_finished());
    for t in closed {
        let ended = t.await.expect("task");
        assert!(refused_before_tls(&ended), "{ended:?}");
    }
    assert_eq!(held.len(), LENT - 1 - SHARE, "the flooder keeps the rest");
    assert_eq!(
        metric(OPEN),
        (held.len() + 2 * SHARE) as f64,
        "both API servers' connections are all still open: none was taken back"
    );
    // Every API server connection is still its own, kept alive, and answers.
    for (i, client) in api_servers.iter().enumerate() {
        let answer = s.review_over(client, REVIEW).await;
        assert_eq!(answer["response"]["allowed"], true, "connection {i}");
    }
    assert_eq!(
        metric(OPEN),
        (held.len() + 2 * SHARE) as f64,
        "the second round reused the connections"
    );
    for t in held {
        t.abort();
    }
    drop(api_servers);
    s.assert_responsive("borrowed connections taken back").await;
    s.stop().await;
}

/// Whether a metrics page names a loopback address anywhere.
fn metrics_page_has_address(page: &str) -> bool {
    page.contains("127.0.0.")
}

/// The honest peer's reviews in one phase: latencies of the answered ones,
/// and how many failed (no answer within the API server's 10 s, or a wrong one).
#[derive(Default)]
struct Latencies {
    answered: Vec<Duration>,
    failed: usize,
}

impl Latencies {
    fn row(&mut self) -> String {
        self.answered.sort();
        let n = self.answered.len();
        let at = |q: usize| {
            self.answered
                .get((n * q / 100).min(n.saturating_sub(1)))
                .map_or("-".to_owned(), |d| {
                    format!("{:.1} ms", d.as_secs_f64() * 1e3)
                })
        };
        let max = self.answered.last().map_or("-".to_owned(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        });
        format!("{n} | {} | {} | {max} | {}", at(50), at(99), self.failed)
    }
}

/// The honest peer: `loops` clients in parallel for `length`, each review on
/// a new TLS connection from `from`, given up after 10 s (the API server's
/// `timeoutSeconds`).
async fn honest_reviews(
    from: IpAddr,
    port: u16,
    ca_pem: &str,
    loops: usize,
    length: Duration,
) -> Latencies {
    let until = Instant::now() + length;
    let mut tasks = Vec::new();
    for _ in 0..loops {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA");
        tasks.push(tokio::spawn(async move {
            let mut got = Latencies::default();
            while Instant::now() < until {
                let client = reqwest::Client::builder()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca.clone())
                    .local_address(from)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let started = Instant::now();
                let answered = async {
                    let resp = client
                        .post(format!("https://localhost:{port}/mutate"))
                        .header("content-type", "application/json")
                        .body(REVIEW)
                        .send()
                        .await
                        .ok()?;
                    let answer: Value = resp.json().await.ok()?;
                    (answer["response"]["uid"] == UID).then_some(())
                };
                match answered.await {
                    Some(()) => got.answered.push(started.elapsed()),
                    None => got.failed += 1,
                }
            }
            got
        }));
    }
    let mut all = Latencies::default();
    for t in tasks {
        let got = t.await.expect("an honest loop");
        all.answered.extend(got.answered);
        all.failed += got.failed;
    }
    all
}

/// The flooder of issue 20, on a thread and runtime of its own: `held`
/// silent TCP connections from `from`, each reopened as soon as the server
/// closes it, until `stop`. Returns how many connections it opened.
fn flood(
    from: IpAddr,
    to: SocketAddr,
    held: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the flooder's runtime");
        rt.block_on(async move {
            let opened = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..held {
                let (opened, mut stop) = (opened.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while !*stop.borrow() {
                        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                        let connected = match socket.bind(SocketAddr::new(from, 0)) {
                            Ok(()) => socket.connect(to).await.ok(),
                            Err(_) => None,
                        };
                        let Some(mut tcp) = connected else {
                            // Out of ports or descriptors for a moment.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        opened.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 64];
                        tokio::select! {
                            _ = async { while let Ok(1..) = tcp.read(&mut buf).await {} } => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            opened.load(Ordering::Relaxed)
        })
    })
}

/// The benchmark behind the per-peer share: the honest peer's review
/// latency (each review on a new TLS connection, 4 at a time) with nobody
/// else on the port, then while one other peer holds 400 silent connections
/// and reopens each one the server closes; with the share effectively off
/// (`--max-connections-per-peer 128`, the whole port) and at its default.
/// The server is the binary at its defaults. Prints a table, asserts
/// nothing; `BENCH_SECONDS` sets each phase's length (default 20):
///
/// ```sh
/// cargo test --release --test hostile peer_flood_figures -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark that prints figures; run it with -- --ignored --nocapture"]
async fn peer_flood_figures() {
    let length = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    // reqwest needs the process's rustls provider before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let flooder = IpAddr::from([127, 0, 0, 2]);
    let honest = IpAddr::from([127, 0, 0, 3]);
    let mut rows = Vec::new();
    for (label, flags) in [
        (
            "before: --max-connections-per-peer 128 (off)",
            &["--max-connections-per-peer", "128"][..],
        ),
        ("after: the default (32)", &[][..]),
    ] {
        let issued = common::pki();
        let vol = Volume::serving(CONFIG, &issued);
        let server = common::Spawned::serving(&vol, flags, "warn,persistence_webhook::server=info");
        let port = server.addr.port();
        let mut quiet = honest_reviews(honest, port, &issued.ca_cert_pem, 4, length).await;
        rows.push(format!("| {label} | unloaded | {} |", quiet.row()));

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let flooding = flood(flooder, server.addr, 400, stopped);
        // Let the flood take hold before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut loaded = honest_reviews(honest, port, &issued.ca_cert_pem, 4, length).await;
        let _ = stop.send(true);
        let opened = tokio::task::spawn_blocking(move || flooding.join())
            .await
            .expect("join")
            .expect("the flooder");
        let page = common::metrics_page(server.metrics)
            .await
            .unwrap_or_default();
        let refused = common::metric(
            &page,
            "persistence_webhook_connections_refused_total{port=\"webhook\",reason=\"peer-share\"}",
        )
        .unwrap_or(0.0);
        let limited = common::metric(
            &page,
            "persistence_webhook_connections_limited_total{port=\"webhook\"}",
        )
        .unwrap_or(0.0);
        rows.push(format!(
            "| {label} | 400 held by 127.0.0.2 ({opened} connects completed, {refused} refused by the server, {limited} limit waits) | {} |",
            loaded.row()
        ));
        assert!(server.stop().success());
    }
    println!(
        "peer-flood ({}s a phase, 4 honest loops, each review on a new TLS connection):",
        length.as_secs()
    );
    println!("| server | other peer | reviews answered | median | p99 | max | failed |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

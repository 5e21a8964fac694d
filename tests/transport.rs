//! Connections over the real server (issue classes of docs/src/reference/hardening.md):
//! silent and idle connections are closed, HTTP/1.1 and HTTP/2 alike and on
//! both ports; the connection limit queues new clients; running out of file
//! descriptors is logged, counted and recovered from; slow uploaders hold
//! no review slot; the plain log format keeps one event per line.

mod common;

use std::time::Duration;

use axum::body::Bytes;
use common::{
    answer_to, eventually, metric, metrics_page, pki, serve_args_for, tls_connector, Spawned,
    Volume, REVIEW,
};
use persistence_webhook::certs::Issued;
use persistence_webhook::serve::{self, Running};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str =
    "data: {data1: {mountPath: /data/1}}\noutputs: {out: {mountPath: /outputs/o}}\n";

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

struct Server {
    running: Running,
    issued: Issued,
    _vol: Volume,
}

impl Server {
    async fn start(extra: &[&str]) -> Server {
        let issued = pki();
        let vol = Volume::serving(CONFIG, &issued);
        let running = serve::start(serve_args_for(&vol, extra))
            .await
            .expect("the server starts");
        Server {
            running,
            issued,
            _vol: vol,
        }
    }

    async fn tls(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.running.addr)
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        tls_connector(&self.issued, &[alpn])
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    async fn metric(&self, prefix: &str) -> f64 {
        let page = metrics_page(self.running.metrics_addr)
            .await
            .expect("metrics page");
        metric(&page, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{page}"))
    }

    async fn review_ok(&self) {
        let c = common::client(&[&self.issued]);
        let resp = c
            .post(format!(
                "https://localhost:{}/mutate",
                self.running.addr.port()
            ))
            .header("content-type", "application/json")
            .body(REVIEW)
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.expect("JSON");
        assert_eq!(answer["response"]["allowed"], true);
    }
}

/// Reads until the server closes the connection (EOF, or a reset), which
/// must happen within `limit`; what the server sent before.
async fn closed_by_server(mut stream: impl AsyncRead + Unpin, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {limit:?}"
    );
    got
}

/// The types of the HTTP/2 frames in `bytes`.
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

fn head(len: usize) -> String {
    format!("POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_at_the_header_deadline() {
    let s = Server::start(&["--header-read-timeout", "500ms", "--idle-timeout", "1h"]).await;
    let limit = Duration::from_secs(5);

    // TCP that never starts TLS.
    let tcp = TcpStream::connect(s.running.addr).await.expect("connect");
    assert!(closed_by_server(tcp, limit).await.is_empty());

    // TLS completed, then nothing.
    let tls = s.tls(b"http/1.1").await;
    assert!(closed_by_server(tls, limit).await.is_empty());

    // HTTP/2: the preface and SETTINGS, then nothing. The server answers
    // with its SETTINGS, then says GOAWAY and closes.
    let mut tls = s.tls(b"h2").await;
    tls.write_all(H2_PREFACE).await.expect("preface");
    tls.flush().await.expect("flush");
    let frames = h2_frame_types(&closed_by_server(tls, limit).await);
    assert_eq!(frames.first(), Some(&4), "SETTINGS first: {frames:?}");
    assert!(frames.contains(&7), "a GOAWAY: {frames:?}");

    // HTTP/1.1 headers that never end.
    let mut tls = s.tls(b"http/1.1").await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: loc")
        .await
        .expect("part of a head");
    tls.flush().await.expect("flush");
    let answer = closed_by_server(tls, limit).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // The plain metrics port: silent TCP, then headers that never end.
    let tcp = TcpStream::connect(s.running.metrics_addr)
        .await
        .expect("connect");
    assert!(closed_by_server(tcp, limit).await.is_empty());
    let mut tcp = TcpStream::connect(s.running.metrics_addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHo")
        .await
        .expect("part of a head");
    let answer = closed_by_server(tcp, limit).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    let closed = s
        .metric("persistence_webhook_connections_closed_total{port=\"webhook\",reason=\"header-timeout\"}")
        .await;
    assert!(
        closed >= 3.0,
        "webhook connections closed at the deadline: {closed}"
    );
    let closed = s
        .metric("persistence_webhook_connections_closed_total{port=\"metrics\",reason=\"header-timeout\"}")
        .await;
    assert!(
        closed >= 1.0,
        "metrics connections closed at the deadline: {closed}"
    );
    assert_eq!(
        s.metric("persistence_webhook_connections_open{port=\"webhook\"}")
            .await,
        0.0
    );
    s.review_ok().await;
    s.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_their_last_request() {
    let s = Server::start(&["--idle-timeout", "500ms"]).await;
    // Far above the idle timeout: the test is that the server closes the
    // connection at all, and a loaded CI machine (this failed once at 5 s
    // with e2e suites running beside it) must not make it flaky.
    let limit = Duration::from_secs(30);

    // HTTP/1.1 keep-alive: the answer, then the close.
    let mut tls = s.tls(b"http/1.1").await;
    tls.write_all(head(REVIEW.len()).as_bytes())
        .await
        .expect("head");
    tls.write_all(REVIEW).await.expect("body");
    tls.flush().await.expect("flush");
    let answer = String::from_utf8_lossy(&closed_by_server(tls, limit).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"allowed\":true"), "{answer}");

    // HTTP/2: one request answered, then the server ends the connection
    // although the client keeps it.
    let tls = s.tls(b"h2").await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = axum::http::Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    body.send_data(Bytes::from_static(REVIEW), true)
        .expect("body");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.expect("data");
        let _ = stream.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let answer: Value = serde_json::from_slice(&got).expect("an AdmissionReview");
    assert_eq!(answer["response"]["allowed"], true);
    let ended = tokio::time::timeout(limit, connection).await;
    assert!(
        ended.is_ok(),
        "the server kept an idle HTTP/2 connection open"
    );
    drop(client);

    let idle = s
        .metric("persistence_webhook_connections_closed_total{port=\"webhook\",reason=\"idle\"}")
        .await;
    assert!(idle >= 2.0, "closed as idle: {idle}");
    s.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploaders_do_not_hold_review_slots() {
    // One review slot, and 16 clients sending their bodies slowly: before,
    // they took the slot first and good reviews waited until they timed out.
    let s = Server::start(&["--max-in-flight", "1", "--request-timeout", "3s"]).await;
    let mut slow = Vec::new();
    for _ in 0..16 {
        let mut tls = s.tls(b"http/1.1").await;
        tls.write_all(head(REVIEW.len()).as_bytes())
            .await
            .expect("head");
        tls.write_all(&REVIEW[..REVIEW.len() / 2])
            .await
            .expect("half");
        tls.flush().await.expect("flush");
        slow.push(tls);
    }
    for _ in 0..5 {
        s.review_ok().await;
    }
    let mut cut = 0;
    for tls in slow {
        let answer = String::from_utf8_lossy(&closed_by_server(tls, Duration::from_secs(10)).await)
            .into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("the body did not arrive in time"),
            "{answer}"
        );
        cut += 1;
    }
    assert_eq!(cut, 16);
    let body_timeouts = s
        .metric("persistence_webhook_review_timeouts_total{phase=\"body\"}")
        .await;
    assert_eq!(body_timeouts, 16.0);
    assert_eq!(
        s.metric("persistence_webhook_review_timeouts_total{phase=\"slot\"}")
            .await,
        0.0
    );
    assert_eq!(s.metric("persistence_webhook_body_buffer_bytes").await, 0.0);
    s.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_queues_new_clients_and_says_so_once() {
    let issued = pki();
    let vol = Volume::serving(CONFIG, &issued);
    let server = Spawned::serving(
        &vol,
        &["--max-connections", "3", "--header-read-timeout", "30s"],
        "warn,persistence_webhook::server=info",
    );
    let connector = tls_connector(&issued, &[b"http/1.1"]);
    let name = ServerName::try_from("localhost").expect("name");
    let mut held = Vec::new();
    for _ in 0..3 {
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        held.push(connector.connect(name.clone(), tcp).await.expect("TLS"));
    }
    let limited = "persistence_webhook_connections_limited_total{port=\"webhook\"}";
    let c = common::client_h1(&[&issued]);
    let url = format!("https://localhost:{}/mutate", server.addr.port());
    let waiting = tokio::spawn(async move {
        c.post(url)
            .header("content-type", "application/json")
            .body(REVIEW)
            .send()
            .await
            .map(|r| r.status())
    });
    let metrics = server.metrics;
    eventually(
        "the fourth connection is counted as limited",
        || async move {
            let page = metrics_page(metrics).await.unwrap_or_default();
            metric(&page, limited).unwrap_or(0.0) >= 1.0
        },
    )
    .await;
    assert!(
        !waiting.is_finished(),
        "the fourth client waits for a free slot"
    );
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered once a connection closed")
        .expect("task")
        .expect("request");
    assert_eq!(status, 200);
    drop(held);
    let logs: Vec<String> = server.logs.try_iter().collect();
    let said = logs
        .iter()
        .filter(|l| l.contains("Connection limit reached"))
        .count();
    assert_eq!(said, 1, "logged once per burst: {logs:#?}");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_logged_counted_and_recovered_from() {
    let issued = pki();
    let vol = Volume::serving(CONFIG, &issued);
    let server = Spawned::start_with_open_files(
        &vol.serve_flags(&[
            "--max-connections",
            "200",
            // 80 connections from one address, all let in.
            "--max-connections-per-peer",
            "200",
            "--header-read-timeout",
            "30s",
            "--reload-interval",
            "1h",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        "warn,persistence_webhook::server=info",
        Some(48),
    );
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(
            TcpStream::connect(server.addr)
                .await
                .expect("the kernel accepts"),
        );
    }
    let mut logs = Vec::new();
    eventually("\"Out of file descriptors\" is logged", || {
        logs.extend(server.logs.try_iter());
        std::future::ready(logs.iter().any(|l| l.contains("Out of file descriptors")))
    })
    .await;
    assert!(
        logs.iter()
            .any(|l| l.contains("The open-files limit is below")),
        "warned at start: {logs:#?}"
    );
    drop(held);
    // Once the descriptors are back, the server accepts and answers again.
    let c = common::client_h1(&[&issued]);
    let url = format!("https://localhost:{}/mutate", server.addr.port());
    eventually("the server recovers and answers", || async {
        let sent = c
            .post(&url)
            .header("content-type", "application/json")
            .body(REVIEW)
            .send()
            .await;
        sent.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let page = metrics_page(server.metrics).await.expect("metrics");
    let errors = metric(
        &page,
        "persistence_webhook_accept_errors_total{port=\"webhook\",kind=\"descriptors\"}",
    )
    .unwrap_or(0.0);
    assert!(errors >= 1.0, "counted: {errors}");
    let logs: Vec<String> = logs.into_iter().chain(server.logs.try_iter()).collect();
    let said = logs
        .iter()
        .filter(|l| l.contains("Out of file descriptors"))
        .count();
    assert_eq!(
        said, 1,
        "logged once per burst, however many accepts failed: {logs:#?}"
    );
    assert!(server.stop().success());
}

#[test]
fn plain_logs_keep_one_event_per_line() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_persistence-webhook"))
        .args([
            "serve",
            "--demo",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--shutdown-delay",
            "0s",
            "--log-format",
            "plain",
            "--demo-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server starts");
        let found = line
            .contains("Listening")
            .then(|| line.split(" addr=").nth(1))
            .flatten()
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned);
        lines.push(line);
        if let Some(addr) = found {
            break addr;
        }
    };
    let port = addr.rsplit(':').next().expect("port").to_owned();
    // The demo line names the CA file as curl takes it.
    let trust = format!("curl --cacert {}", dir.path().join("ca.crt").display());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Demo mode") && l.contains(&trust)),
        "no demo line with `{trust}`: {lines:#?}"
    );
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("demo CA");
    let mut review: Value = serde_json::from_slice(REVIEW).expect("review");
    review["request"]["object"]["metadata"]["annotations"] = serde_json::json!({"polyaxon.com/persistence": "{\"data\": [], \"x\\nINFO persistence_webhook: forged\": 1}"});
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let answer: Value = runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
            .build()
            .expect("client");
        answer_to(&c, port.parse().expect("a port"), to_body(&review)).await
    });
    assert_eq!(answer["response"]["allowed"], false);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success());
    lines.extend(rx.try_iter());
    let denied: Vec<&String> = lines.iter().filter(|l| l.contains("Denied")).collect();
    assert_eq!(denied.len(), 1, "{lines:#?}");
    assert!(
        denied[0].contains("x\\nINFO persistence_webhook: forged"),
        "{}",
        denied[0]
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("INFO persistence_webhook: forged")),
        "a forged line: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_uid_or_name_makes_a_short_log_line() {
    // A 1 MB uid is echoed in the answer (the API server matches on it) but
    // clipped in the log: one denial is one short line, not 1 MB.
    let issued = pki();
    let vol = Volume::serving(CONFIG, &issued);
    let server = Spawned::serving(&vol, &[], "warn,persistence_webhook::server=info");
    let uid = "u".repeat(1 << 20);
    let mut review: Value = serde_json::from_slice(REVIEW).expect("review");
    review["request"]["uid"] = Value::String(uid.clone());
    review["request"]["object"]["metadata"]["name"] = Value::String("n".repeat(200_000));
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({"polyaxon.com/persistence": "data: [nope]"});
    let c = common::client_h1(&[&issued]);
    let answer = answer_to(&c, server.addr.port(), to_body(&review)).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["uid"].as_str().map(str::len),
        Some(1 << 20)
    );
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.len() < 2048, "denial of {} bytes", message.len());
    server.terminate();
    let logs: Vec<String> = server.logs.iter().collect();
    assert!(server.stop_waiting().success());
    let denied: Vec<&String> = logs.iter().filter(|l| l.contains("\"Denied\"")).collect();
    assert_eq!(denied.len(), 1, "{logs:#?}");
    assert!(
        denied[0].len() < 4096,
        "a log line of {} bytes",
        denied[0].len()
    );
    assert!(denied[0].contains("(1048576 bytes)"), "{}", denied[0]);
    assert!(denied[0].contains("(200000 bytes)"), "{}", denied[0]);
}

fn to_body(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("JSON")
}

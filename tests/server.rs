//! The HTTPS server: in-process router tests (`oneshot`), then tests over
//! real TLS on 127.0.0.1:0, hot reload the way Secret/ConfigMap volumes
//! publish files, and graceful shutdown of the real binary on SIGTERM.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use common::{
    client, eventually, metric_at, outputs_store, pki, serve_args, serve_args_for, Spawned, Volume,
    REVIEW,
};
use persistence_webhook::serve;
use persistence_webhook::server::{self, AppState, Limits};
use persistence_webhook::Config;
use serde_json::Value;
use tower::ServiceExt;

const CONFIG_A: &str =
    "data: {data1: {mountPath: /data/1}}\noutputs: {out-a: {mountPath: /outputs/a}}\n";
const CONFIG_B: &str =
    "data: {data1: {mountPath: /data/1}}\noutputs: {out-b: {mountPath: /outputs/b}}\n";

fn state(max_body_bytes: usize) -> Arc<AppState> {
    let config = Config::from_yaml(CONFIG_A).expect("valid config");
    Arc::new(AppState::new(
        config,
        Limits {
            max_body_bytes,
            request_timeout: Duration::from_secs(5),
            max_in_flight: 8,
            max_body_buffer_bytes: 64 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(5),
            bounds: persistence_webhook::Bounds::default(),
        },
    ))
}

async fn call(
    state: &Arc<AppState>,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = server::router(state.clone())
        .oneshot(req)
        .await
        .expect("the router always answers");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn router_answers_each_kind_of_request() {
    let st = state(64 * 1024);
    let json = Some("application/json");

    let (status, body) = call(
        &st,
        Method::POST,
        "/mutate?timeout=10s",
        json,
        REVIEW.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out: Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!(
        out["response"]["uid"],
        "ecb6a916-9f88-4324-86e2-32ca92226e38"
    );
    assert_eq!(out["response"]["patchType"], "JSONPatch");

    let (status, body) = call(
        &st,
        Method::POST,
        "/mutate",
        json,
        b"not json at all".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("the body is not JSON"), "{body}");

    let (status, body) = call(
        &st,
        Method::POST,
        "/mutate",
        json,
        br#"{"hello":"world"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not an AdmissionReview"), "{body}");

    let (status, body) = call(&st, Method::POST, "/validate", json, REVIEW.to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("POST /mutate"), "{body}");

    let (status, _) = call(&st, Method::GET, "/mutate", None, vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let (status, body) = call(
        &st,
        Method::POST,
        "/mutate",
        Some("text/plain"),
        REVIEW.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body.contains("application/json"), "{body}");

    let (status, body) = call(&st, Method::POST, "/mutate", None, REVIEW.to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    let (status, _) = call(&st, Method::GET, "/healthz", None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&st, Method::GET, "/readyz", None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    st.set_draining();
    let (status, _) = call(&st, Method::GET, "/readyz", None, vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let metrics = st.metrics.render();
    assert!(
        metrics.contains("persistence_webhook_reviews_total{outcome=\"patched\",reason=\"\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "persistence_webhook_reviews_total{outcome=\"invalid\",reason=\"malformed\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let st = state(1024);
    let (status, _) = call(
        &st,
        Method::POST,
        "/mutate",
        Some("application/json"),
        vec![b' '; 4096],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is read and answered (here: not JSON, 400).
    let (status, _) = call(
        &st,
        Method::POST,
        "/mutate",
        Some("application/json"),
        vec![b' '; 1000],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_port_serves_metrics_and_probes() {
    let st = state(1024);
    for (uri, want) in [
        ("/metrics", StatusCode::OK),
        ("/healthz", StatusCode::OK),
        ("/readyz", StatusCode::OK),
        ("/mutate", StatusCode::NOT_FOUND),
    ] {
        let req = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let resp = server::metrics_router(st.clone())
            .oneshot(req)
            .await
            .expect("answer");
        assert_eq!(resp.status(), want, "{uri}");
    }
}

async fn post_review(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
) -> reqwest::Result<(StatusCode, Value)> {
    let resp = client
        .post(format!(
            "https://localhost:{}/mutate?timeout=10s",
            addr.port()
        ))
        .header("content-type", "application/json")
        .body(REVIEW)
        .send()
        .await?;
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let body: Value = resp.json().await?;
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_http2_and_plain_http_refused() {
    let pki = pki();
    let vol = Volume::serving(CONFIG_A, &pki);
    let args = serve_args_for(&vol, &[]);
    let running = serve::start(args).await.expect("starts");
    let addr = running.addr;

    let trusted = client(&[&pki]);
    let (status, answer) = post_review(&trusted, addr).await.expect("review over TLS");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(outputs_store(&answer).as_deref(), Some("out-a"));

    // HTTP/2 by ALPN.
    let resp = trusted
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    // A client that does not trust our CA cannot connect.
    let stranger = client(&[&common::pki()]);
    let err = post_review(&stranger, addr)
        .await
        .expect_err("untrusted CA must fail");
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let result = plain
        .post(format!("http://127.0.0.1:{}/mutate", addr.port()))
        .header("content-type", "application/json")
        .body(REVIEW)
        .send()
        .await;
    assert!(
        result.is_err(),
        "plain HTTP must be refused, got {result:?}"
    );

    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_config_and_cert_under_load_and_refuses_broken_ones() {
    let (pki_a, pki_b) = (pki(), pki());
    let mut vol = Volume::serving(CONFIG_A, &pki_a);
    let args = serve_args_for(&vol, &["--reload-interval", "50ms"]);
    let running = serve::start(args).await.expect("starts");
    let (addr, maddr) = (running.addr, running.metrics_addr);
    let both = client(&[&pki_a, &pki_b]);

    // A steady stream of reviews for the whole test: none may fail.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, stop, sent, failed) = (both.clone(), stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                sent.fetch_add(1, Ordering::SeqCst);
                match post_review(&c, addr).await {
                    Ok((StatusCode::OK, a)) if a["response"]["allowed"] == true => {}
                    other => {
                        eprintln!("failed review: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }

    // New config and new certificate, published like a volume update.
    vol.publish(&[
        ("config.yaml", CONFIG_B),
        ("tls.crt", &pki_b.cert_pem),
        ("tls.key", &pki_b.key_pem),
    ]);
    let only_b = client(&[&pki_b]);
    eventually("the new config is used", || async {
        matches!(post_review(&both, addr).await, Ok((_, a)) if outputs_store(&a).as_deref() == Some("out-b"))
    })
    .await;
    eventually("the new certificate is served", || async {
        post_review(&only_b, addr).await.is_ok()
    })
    .await;
    assert_eq!(
        metric_at(maddr, "persistence_webhook_config_generation").await,
        Some(2.0)
    );

    // A broken version: both refused, the last good ones keep serving.
    vol.publish(&[
        ("config.yaml", "data: {bad: {mountPath: relative}}\n"),
        ("tls.crt", "not a certificate"),
        ("tls.key", &pki_b.key_pem),
    ]);
    eventually("the broken config is counted", || async {
        metric_at(
            maddr,
            "persistence_webhook_reloads_total{kind=\"config\",result=\"failure\"}",
        )
        .await
            == Some(1.0)
    })
    .await;
    eventually("the broken certificate is counted", || async {
        metric_at(
            maddr,
            "persistence_webhook_reloads_total{kind=\"certificate\",result=\"failure\"}",
        )
        .await
            == Some(1.0)
    })
    .await;
    assert_eq!(
        metric_at(maddr, "persistence_webhook_config_generation").await,
        Some(2.0)
    );
    let (_, answer) = post_review(&only_b, addr)
        .await
        .expect("old cert still served");
    assert_eq!(
        outputs_store(&answer).as_deref(),
        Some("out-b"),
        "old config still used"
    );

    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.expect("load task");
    }
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(sent > 20, "the load stream sent only {sent} reviews");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} reviews failed during reloads"
    );
    assert_eq!(
        metric_at(
            maddr,
            "persistence_webhook_reloads_total{kind=\"config\",result=\"success\"}"
        )
        .await,
        Some(1.0)
    );
    running.shutdown().await.expect("clean shutdown");
}

#[test]
fn start_refuses_bad_files_naming_the_flag() {
    let pki = pki();
    let vol = Volume::new(&[
        ("config.yaml", "data: {x: {mountPath: rel}}\n"),
        ("good.yaml", CONFIG_A),
        ("tls.crt", &pki.cert_pem),
        ("tls.key", &pki.key_pem),
        ("other.key", &common::pki().key_pem),
    ]);
    let p = |n: &str| vol.path(n).to_str().expect("utf-8").to_owned();
    let (bad, missing, good, crt, key, other) = (
        p("config.yaml"),
        p("missing.yaml"),
        p("good.yaml"),
        p("tls.crt"),
        p("tls.key"),
        p("other.key"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cases = [
        (
            ["--config", &bad, "--tls-cert", &crt, "--tls-key", &key],
            "--config",
        ),
        (
            ["--config", &missing, "--tls-cert", &crt, "--tls-key", &key],
            "cannot read it",
        ),
        (
            ["--config", &good, "--tls-cert", &crt, "--tls-key", &other],
            "does not match",
        ),
        (
            ["--config", &good, "--tls-cert", &key, "--tls-key", &key],
            "--tls-cert",
        ),
    ];
    for (flags, want) in cases {
        let err = rt
            .block_on(serve::start(serve_args(&flags)))
            .expect_err(want);
        let msg = format!("{err:#}");
        assert!(msg.contains(want), "{flags:?}: {msg}");
    }
}

#[test]
fn start_refuses_limits_that_contradict_each_other_naming_the_flag() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cases = [
        (
            ["--max-connections", "8", "--max-connections-per-peer", "9"],
            "--max-connections-per-peer (9) must be at most --max-connections (8): lower --max-connections-per-peer, or raise --max-connections",
        ),
        (
            ["--max-body-bytes", "4096", "--max-body-buffer-bytes", "2048"],
            "--max-body-buffer-bytes (2048) must be at least --max-body-bytes (4096)",
        ),
    ];
    for (flags, want) in cases {
        // Refused before anything is loaded or bound (so --demo writes nothing).
        let mut argv = vec!["--demo"];
        argv.extend_from_slice(&flags);
        let err = rt
            .block_on(serve::start(serve_args(&argv)))
            .expect_err(want);
        let msg = format!("{err:#}");
        assert!(msg.contains(want), "{flags:?}: {msg}");
    }
}

/// The real binary: SIGTERM in the middle of requests whose bodies are still
/// arriving; every one is answered and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_reviews_and_exits_zero() {
    let pki = pki();
    let vol = Volume::serving(CONFIG_A, &pki);
    let server = Spawned::serving(&vol, &[], "info");
    let (addr, metrics_addr) = (server.addr, server.metrics);

    let c = client(&[&pki]);
    let mut senders = Vec::new();
    let mut in_flight = Vec::new();
    let (half, rest) = REVIEW.split_at(REVIEW.len() / 2);
    for _ in 0..8 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        tx.send(half.to_vec()).await.expect("queue the first half");
        senders.push(tx);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
        });
        let c = c.clone();
        in_flight.push(tokio::spawn(async move {
            let resp = c
                .post(format!("https://localhost:{}/mutate", addr.port()))
                .header("content-type", "application/json")
                .header("content-length", REVIEW.len().to_string())
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        }));
    }
    let plain = common::plain_client();
    eventually(
        "eight reviews are in flight, their bodies half sent",
        || async move {
            metric_at(metrics_addr, "persistence_webhook_reviews_in_flight").await == Some(8.0)
        },
    )
    .await;
    server.terminate();
    eventually("the server reports it is draining", || {
        let plain = plain.clone();
        async move {
            matches!(plain.get(format!("http://{metrics_addr}/readyz")).send().await, Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
        }
    })
    .await;
    for tx in senders {
        tx.send(rest.to_vec()).await.expect("send the rest");
    }

    for task in in_flight {
        let (status, body) = task.await.expect("task").expect("answered despite SIGTERM");
        assert_eq!(status, reqwest::StatusCode::OK);
        assert_eq!(body["response"]["allowed"], true);
    }
    let (exit, server) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        (server.child.wait().expect("wait"), server)
    })
    .await
    .expect("join");
    assert!(exit.success(), "exit status {exit:?}");
    let lines: Vec<String> = server.logs.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("Shutting down")),
        "{lines:#?}"
    );
}

/// After SIGTERM and before the port closes, the server is not ready but
/// still answers reviews on new connections, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_serving_through_the_shutdown_delay() {
    let pki = pki();
    let vol = Volume::serving(CONFIG_A, &pki);
    let server = Spawned::serving(&vol, &["--shutdown-delay", "3s"], "info");
    let (addr, metrics_addr) = (server.addr, server.metrics);
    server.terminate();
    let plain = common::plain_client();
    eventually("/readyz answers 503", || {
        let plain = plain.clone();
        async move {
            matches!(plain.get(format!("http://{metrics_addr}/readyz")).send().await,
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
        }
    })
    .await;
    // A fresh client: a new connection, made after SIGTERM.
    let (status, answer) = post_review(&client(&[&pki]), addr)
        .await
        .expect("still serving");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], true);
    let exit = tokio::task::spawn_blocking(move || server.stop_waiting())
        .await
        .expect("join");
    assert!(exit.success(), "{exit:?}");
}

/// A review's log line carries its span's fields: a patched review's
/// `Reviewed` line is at debug, and with debug enabled it names the review
/// (the server skips filling the span only when no filter could show it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_review_logged_at_debug_names_its_review() {
    let pki = pki();
    let vol = Volume::serving(CONFIG_A, &pki);
    let server = Spawned::serving(&vol, &[], "info,persistence_webhook::server::admit=debug");
    let (status, answer) = post_review(&client(&[&pki]), server.addr)
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    let sent: Value = serde_json::from_slice(REVIEW).expect("the review fixture is JSON");
    let mut seen = Vec::new();
    let line = loop {
        let line = server
            .logs
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no Reviewed line; saw {seen:#?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "Reviewed" {
            break v;
        }
        seen.push(line);
    };
    let span = &line["span"];
    assert_eq!(span["name"], "review", "{line}");
    assert_eq!(span["uid"], sent["request"]["uid"], "{line}");
    assert_eq!(span["namespace"], sent["request"]["namespace"], "{line}");
    assert_eq!(span["operation"], "CREATE", "{line}");
    assert_eq!(line["outcome"], "patched", "{line}");
    drop(server);
}

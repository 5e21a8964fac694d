//! Churn and resource ceilings, against the real binary (so its memory can
//! be read from /proc):
//!
//! - `soak_under_config_and_certificate_churn`: steady load while the config
//!   is replaced every second (valid and invalid versions alternating) and
//!   the certificate rotated every few seconds, the way Secret and ConfigMap
//!   volumes publish files. `SOAK_SECONDS` sets the duration (default 6, as
//!   in CI; `docs/src/reference/hardening.md` has a longer run).
//! - `many_concurrent_large_reviews_stay_under_the_memory_ceiling`: 256
//!   concurrent reviews of ~1 MiB pods.
//!
//! Both print a `soak:`/`ceiling:` line with the figures.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_h1, metric, metrics_page, outputs_store, pki, Spawned, Volume, REVIEW};
use persistence_webhook::certs::Issued;
use serde_json::{json, Value};

fn config(outputs: &str) -> String {
    format!("data: {{data1: {{mountPath: /data/1}}}}\noutputs: {{{outputs}: {{mountPath: /outputs/x}}}}\n")
}

/// Refused at reload (relative mountPath), and recognisable if ever used:
/// its outputs store is `refused`.
const INVALID: &str =
    "data: {data1: {mountPath: relative}}\noutputs: {refused: {mountPath: /outputs/r}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_config_and_certificate_churn() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let pairs: Vec<Issued> = (0..(seconds / 3 + 2)).map(|_| pki()).collect();
    let mut vol = Volume::serving(&config("out-0"), &pairs[0]);
    let server = Spawned::serving(
        &vol,
        &["--reload-interval", "100ms"],
        "warn,persistence_webhook::server=info",
    );
    let cas: Vec<&Issued> = pairs.iter().collect();
    let c = client_h1(&cas);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, bad_status, refused_used) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let url = format!(
        "https://localhost:{}/mutate?timeout=10s",
        server.addr.port()
    );
    let mut load = Vec::new();
    for _ in 0..8 {
        let (c, url, stop, sent, bad, refused) = (
            c.clone(),
            url.clone(),
            stop.clone(),
            sent.clone(),
            bad_status.clone(),
            refused_used.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let resp = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(REVIEW)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => match r.json::<Value>().await
                    {
                        Ok(a) if outputs_store(&a).as_deref() == Some("refused") => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(a) if a["response"]["allowed"] == true => {}
                        other => {
                            eprintln!("soak: bad answer {other:?}");
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    other => {
                        eprintln!("soak: {other:?}");
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut cert = 0;
    let (mut valid_published, mut invalid_published) = (0, 0);
    for tick in 1..=seconds {
        let config_text = if tick % 2 == 0 {
            valid_published += 1;
            config(&format!("out-{tick}"))
        } else {
            invalid_published += 1;
            INVALID.to_owned()
        };
        if tick % 3 == 0 {
            cert += 1;
        }
        let pair = &pairs[cert];
        vol.publish(&[
            ("config.yaml", &config_text),
            ("tls.crt", &pair.cert_pem),
            ("tls.key", &pair.key_pem),
        ]);
        let deadline = start + Duration::from_secs(tick);
        while Instant::now() < deadline {
            samples.push(server.rss_kib().0);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    // Let the last publish be polled before reading the counters.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics_page(server.metrics).await.expect("metrics");
    let (rss_now, rss_peak) = server.rss_kib();
    let third = samples.len() / 3;
    let avg = |s: &[u64]| s.iter().sum::<u64>() / s.len().max(1) as u64;
    let (early, late) = (
        avg(&samples[..third.max(1)]),
        avg(&samples[samples.len() - third.max(1)..]),
    );
    let sent = sent.load(Ordering::Relaxed);
    let bad = bad_status.load(Ordering::Relaxed);
    let refused = refused_used.load(Ordering::Relaxed);
    let reloads = |kind: &str, result: &str| {
        metric(
            &text,
            &format!("persistence_webhook_reloads_total{{kind=\"{kind}\",result=\"{result}\"}}"),
        )
        .unwrap_or(-1.0)
    };
    eprintln!(
        "soak: seconds={seconds} requests={sent} non_200={bad} refused_config_answers={refused} \
         rss_peak_mib={:.1} rss_final_mib={:.1} rss_early_avg_mib={:.1} rss_late_avg_mib={:.1} \
         config_reloads_ok={} config_reloads_failed={} cert_reloads_ok={} cert_reloads_failed={} generation={}",
        rss_peak as f64 / 1024.0,
        rss_now as f64 / 1024.0,
        early as f64 / 1024.0,
        late as f64 / 1024.0,
        reloads("config", "success"),
        reloads("config", "failure"),
        reloads("certificate", "success"),
        reloads("certificate", "failure"),
        metric(&text, "persistence_webhook_config_generation").unwrap_or(-1.0),
    );
    assert!(sent > 100, "the load sent only {sent} requests");
    assert_eq!(bad, 0, "{bad} of {sent} requests were not answered 200");
    assert_eq!(
        refused, 0,
        "{refused} answers were computed with a refused config"
    );
    assert_eq!(reloads("config", "success"), valid_published as f64);
    assert_eq!(reloads("config", "failure"), invalid_published as f64);
    assert_eq!(reloads("certificate", "success"), cert as f64);
    assert_eq!(reloads("certificate", "failure"), 0.0);
    assert!(
        late <= early + early / 2 + 8 * 1024,
        "RSS grows: {early} KiB early, {late} KiB late"
    );
    assert!(server.stop().success(), "clean exit");
}

/// A pod of about `bytes` bytes: containers with many env vars.
fn large_review(bytes: usize, uid: usize) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(REVIEW).expect("fixture");
    review["request"]["uid"] = json!(format!("large-{uid}"));
    let value = "x".repeat(200);
    let per_container = bytes / 3 / 230;
    let env: Vec<Value> = (0..per_container)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": value}))
        .collect();
    let containers: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("c{i}"), "image": "busybox", "env": env}))
        .collect();
    review["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    serde_json::to_vec(&review).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_large_reviews_stay_under_the_memory_ceiling() {
    let pki = pki();
    let vol = Volume::serving(&config("out"), &pki);
    let server = Spawned::serving(
        &vol,
        // A burst far past the body buffer: bodies wait their turn for
        // room, which --body-read-timeout would otherwise cut short. All
        // from one address: its share is the whole port, so the burst meets
        // the shared limits this test is about.
        &[
            "--request-timeout",
            "30s",
            "--body-read-timeout",
            "30s",
            "--max-connections-per-peer",
            "128",
        ],
        "warn,persistence_webhook::server=info",
    );
    let c = client_h1(&[&pki]);
    let url = format!("https://localhost:{}/mutate", server.addr.port());
    let bodies: Vec<Vec<u8>> = (0..256).map(|i| large_review(1 << 20, i)).collect();
    let size = bodies[0].len();
    let start = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = r.status();
                let text = r.text().await?;
                let answer: Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
                Ok::<_, reqwest::Error>((status, answer))
            })
        })
        .collect();
    let mut patched = 0;
    for t in tasks {
        let (status, answer) = t.await.expect("task").expect("answered");
        assert_eq!(status, reqwest::StatusCode::OK);
        assert_eq!(
            answer["response"]["allowed"], true,
            "{}",
            answer["response"]
        );
        patched += usize::from(answer["response"]["patchType"] == "JSONPatch");
    }
    let (rss_now, rss_peak) = server.rss_kib();
    eprintln!(
        "ceiling: reviews=256 body_bytes={size} patched={patched} seconds={:.1} rss_peak_mib={:.1} rss_after_mib={:.1}",
        start.elapsed().as_secs_f64(),
        rss_peak as f64 / 1024.0,
        rss_now as f64 / 1024.0
    );
    assert_eq!(patched, 256);
    // --max-in-flight (32) bodies of 1 MiB are held at once, plus buffers:
    // far below the manifests' 256 MiB limit.
    assert!(rss_peak < 200 * 1024, "peak RSS {rss_peak} KiB");
    assert!(server.stop().success(), "clean exit");
}

/// Over one HTTP/2 connection, streams waiting for a review slot do not read
/// their bodies; they must not use up the connection's flow-control window
/// and starve the streams that hold a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_waiting_for_a_slot_do_not_starve_the_others() {
    let pki = pki();
    let vol = Volume::serving(&config("out"), &pki);
    let server = Spawned::serving(
        &vol,
        &["--max-in-flight", "4", "--request-timeout", "20s"],
        "warn,persistence_webhook::server=info",
    );
    let c = common::client(&[&pki]);
    let url = format!("https://localhost:{}/mutate", server.addr.port());
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (c, url, body) = (c.clone(), url.clone(), large_review(256 * 1024, i));
            tokio::spawn(async move {
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                Ok::<_, reqwest::Error>((r.version(), r.status()))
            })
        })
        .collect();
    for t in tasks {
        let (version, status) = t.await.expect("task").expect("answered");
        assert_eq!(version, reqwest::Version::HTTP_2);
        assert_eq!(status, reqwest::StatusCode::OK);
    }
    eprintln!(
        "http2: 64 streams of 256 KiB over one connection, 4 slots: {:.1}s",
        start.elapsed().as_secs_f64()
    );
    assert!(server.stop().success());
}

/// Every class of hostile input from docs/src/reference/hardening.md at once, against the
/// binary with the manifests' flags: stalled HTTP/2 uploads, silent TLS and
/// HTTP/2 connections, slow uploaders, bodies of the largest size, pods whose
/// patch is as large as the bounds allow, pods that would amplify past them,
/// and `containers:` lists as long as the pod. Peak RSS is reported against
/// the written bound (docs/src/reference/hardening.md, "Memory bound") and must stay under
/// it and under the manifests' 256 MiB limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_inputs_of_every_class_at_once_stay_under_the_written_bound() {
    use axum::body::Bytes;
    use rustls::pki_types::ServerName;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    // Long enough for the stalled uploads to reach their 8 s deadline and
    // the large bodies queued behind them to be served.
    let seconds: u64 = std::env::var("CEILING_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let pki = pki();
    let vol = Volume::serving(&config("out"), &pki);
    // The manifests' flags (manifests/base/deployment.yaml), defaults
    // otherwise, but for the per-peer share: every class comes from
    // 127.0.0.1 here, so one peer is let take the whole port (the bound
    // does not depend on how the port is split among peers).
    let server = Spawned::serving(
        &vol,
        &[
            "--request-timeout",
            "8s",
            "--shutdown-delay",
            "0s",
            "--max-connections-per-peer",
            "128",
        ],
        "warn,persistence_webhook::server=info",
    );
    let (_, idle_peak) = server.rss_kib();
    let addr = server.addr;
    let url = format!("https://localhost:{}/mutate", addr.port());
    let h2 = common::tls_connector(&pki, &[b"h2"]);
    let h1 = common::tls_connector(&pki, &[b"http/1.1"]);
    let name = ServerName::try_from("localhost").expect("name");
    let stop = Arc::new(AtomicBool::new(false));
    let mut held = Vec::new();
    let mut tasks = Vec::new();

    // Attackers take 90 of the 128 connections (--max-connections), the
    // clients with real work 24 (the connection limit itself is tested in
    // tests/transport.rs).
    // 60 HTTP/2 connections, each uploading 1 MiB of an announced 4 MiB and
    // then stalling.
    for _ in 0..60 {
        held.push(stalled_h2_uploads(&h2, addr, &url, 1).await);
    }
    // 10 silent TLS connections and 10 HTTP/2 connections that send only
    // their preface.
    for i in 0..20 {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let connector = if i % 2 == 0 { &h1 } else { &h2 };
        let mut tls = connector.connect(name.clone(), tcp).await.expect("TLS");
        if i % 2 == 1 {
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await
                .expect("preface");
        }
        held.push(Box::new(tls));
    }
    // 10 slow uploaders: one byte of body every 100 ms.
    for _ in 0..10 {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut tls = h1.connect(name.clone(), tcp).await.expect("TLS");
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let head = format!("POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", REVIEW.len());
            if tls.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for b in REVIEW {
                if stop.load(Ordering::Relaxed) || tls.write_all(&[*b]).await.is_err() {
                    return;
                }
                let _ = tls.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // Reviews that do work, 6 clients each, in a loop until the end.
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        ("largest-body", large_review(4 * 1024 * 1024 - 64 * 1024, 0)),
        ("largest-patch", bare_containers(1_200, None)),
        ("amplified", bare_containers(5_000, None)),
        ("long-containers-list", bare_containers(5_000, Some(5_000))),
    ];
    let answered = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        usize,
    >::new()));
    for (kind, body) in kinds {
        let body = Bytes::from(body);
        for _ in 0..6 {
            let c = client_h1(&[&pki]);
            let (url, body, stop, answered) =
                (url.clone(), body.clone(), stop.clone(), answered.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(r) = c
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let status = r.status().as_u16();
                    let outcome = match r.json::<Value>().await {
                        Ok(v) if v["response"]["patchType"] == "JSONPatch" => "patched",
                        Ok(v) if v["response"]["allowed"] == false => "denied",
                        Ok(_) => "allowed",
                        Err(_) => "not-json",
                    };
                    let key = format!("{kind}/{status}/{outcome}");
                    *answered.lock().expect("lock").entry(key).or_default() += 1;
                }
            }));
        }
    }
    let start = Instant::now();
    let mut peak_buffer = 0.0f64;
    let mut peak_conns = 0.0f64;
    // The liveness probe's view: /healthz on the TLS port, over a connection
    // of its own, while large reviews run (reported, not asserted).
    let probe = client_h1(&[&pki]);
    let healthz = format!("https://localhost:{}/healthz", addr.port());
    let mut probe_worst = Duration::ZERO;
    let mut probes_ok = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        let asked = Instant::now();
        if probe
            .get(&healthz)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            probes_ok += 1;
            probe_worst = probe_worst.max(asked.elapsed());
        }
        if let Some(page) = metrics_page(server.metrics).await {
            peak_buffer = peak_buffer
                .max(metric(&page, "persistence_webhook_body_buffer_bytes").unwrap_or(0.0));
            peak_conns = peak_conns.max(
                metric(
                    &page,
                    "persistence_webhook_connections_open{port=\"webhook\"}",
                )
                .unwrap_or(0.0),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (_, peak) = server.rss_kib();
    drop(held);
    for t in tasks {
        t.abort();
    }
    let answered = answered.lock().expect("lock").clone();
    let bound = documented_bound_kib(idle_peak);
    eprintln!(
        "ceiling-all-classes: seconds={seconds} rss_idle_mib={:.1} rss_peak_mib={:.1} bound_mib={:.1} limit_mib=256 body_buffer_peak_mib={:.1} webhook_connections_peak={peak_conns} healthz_ok={probes_ok} healthz_worst_ms={} answers={answered:?}",
        idle_peak as f64 / 1024.0,
        peak as f64 / 1024.0,
        bound as f64 / 1024.0,
        peak_buffer / 1048576.0,
        probe_worst.as_millis(),
    );
    assert!(probes_ok > 0, "the liveness probe was answered");
    for kind in [
        "largest-body",
        "largest-patch",
        "amplified",
        "long-containers-list",
    ] {
        assert!(
            answered
                .keys()
                .any(|k| k.starts_with(kind) && k.contains("/200/")),
            "{kind} was answered: {answered:?}"
        );
    }
    assert!(
        answered
            .keys()
            .any(|k| k.starts_with("amplified/200/denied")),
        "amplification is denied: {answered:?}"
    );
    assert!(
        peak_buffer <= 40.0 * 1048576.0,
        "body buffer {peak_buffer}: over --max-body-buffer-bytes and the small pool"
    );
    assert!(
        peak < bound,
        "peak RSS {peak} KiB over the written bound {bound} KiB"
    );
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB over the manifests' limit"
    );
    assert!(server.stop().success(), "clean exit");
}

/// The written memory bound (docs/src/reference/hardening.md, "Memory bound") for the
/// default flags, in KiB, over the measured `base`, less the kernel's socket
/// buffers (192 KiB a connection: charged to the pod, but not in the RSS
/// this is compared with):
///
/// base + (max_connections + max_metrics_connections) x 320 KiB
///      + max_body_buffer_bytes + 8 MiB (the small-body pool)
///      + 6 x max_body_bytes (the one large review being parsed)
///      + max_in_flight x (6 x 64 KiB + 1.5 x max_patch_bytes)
fn documented_bound_kib(base: u64) -> u64 {
    const MIB: u64 = 1024;
    let connections = (128 + 32) * 320;
    let bodies = 32 * MIB + 8 * MIB;
    let heavy = 6 * 4 * MIB;
    let reviews = 32 * (6 * 64 + 3 * MIB / 2);
    base + connections + bodies + heavy + reviews
}

/// A pod of `n` bare containers; with `containers: Some(k)`, a selection
/// naming the first `k` of them.
fn bare_containers(n: usize, listed: Option<usize>) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(REVIEW).expect("fixture");
    let containers: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": "i"}))
        .collect();
    review["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    if let Some(k) = listed {
        let names: Vec<String> = (0..k).map(|i| format!("c{i}")).collect();
        let selection = json!({ "containers": names }).to_string();
        review["request"]["object"]["metadata"]["annotations"] =
            json!({ "polyaxon.com/persistence": selection });
    }
    serde_json::to_vec(&review).expect("JSON")
}

/// What one connection can make the server hold at most, whatever its
/// client does: 100 HTTP/2 connections, each with two streams that announce
/// 4 MiB bodies and push 1 MiB. The body buffer holds one such body (it is
/// set to 4 MiB here), so every other stream waits unread and every
/// connection's flow-control windows fill. The per-connection figure is the
/// RSS growth beyond that one body, divided by the connections; it is the
/// coefficient of the written bound (docs/src/reference/hardening.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_holds_at_most_its_written_share() {
    const CONNECTIONS: u64 = 100;
    let pki = pki();
    let vol = Volume::serving(&config("out"), &pki);
    let server = Spawned::serving(
        &vol,
        &[
            "--request-timeout",
            "20s",
            "--body-read-timeout",
            "20s",
            "--max-body-buffer-bytes",
            "4194304",
            // 100 connections from one address.
            "--max-connections-per-peer",
            "128",
        ],
        "warn,persistence_webhook::server=info",
    );
    let addr = server.addr;
    let url = format!("https://localhost:{}/mutate", addr.port());
    let h2 = common::tls_connector(&pki, &[b"h2"]);
    // Warm up the allocator and the runtime with one ordinary review first.
    let c = client_h1(&[&pki]);
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(REVIEW)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    let (before, _) = server.rss_kib();
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(stalled_h2_uploads(&h2, addr, &url, 2).await);
    }
    // Let the windows fill: until RSS has not moved for half a second.
    let (mut last, mut still) = (0, 0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (now, _) = server.rss_kib();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still == 5 {
            break;
        }
    }
    let (after, peak) = server.rss_kib();
    let page = metrics_page(server.metrics).await.expect("metrics");
    let buffered_kib =
        metric(&page, "persistence_webhook_body_buffer_bytes").unwrap_or(0.0) as u64 / 1024;
    let open = metric(
        &page,
        "persistence_webhook_connections_open{port=\"webhook\"}",
    )
    .unwrap_or(0.0);
    let per_connection = after.saturating_sub(before + buffered_kib) / CONNECTIONS;
    eprintln!(
        "connection-memory: connections={open} rss_before_mib={:.1} rss_after_mib={:.1} rss_peak_mib={:.1} body_budget_held_mib={:.1} per_connection_kib={per_connection} (written bound 320)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
        buffered_kib as f64 / 1024.0,
    );
    assert!(
        open >= CONNECTIONS as f64,
        "every connection is open: {open}"
    );
    assert!(per_connection < 320, "{per_connection} KiB per connection");
    drop(held);
    assert!(server.stop().success());
}

/// A new HTTP/2 connection with `streams` uploads that each announce 4 MiB,
/// push 1 MiB (as far as flow control lets them) and stall. Everything that
/// keeps them open is in the box: drop it to let them go.
async fn stalled_h2_uploads(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    url: &str,
    streams: usize,
) -> Box<dyn std::any::Any + Send> {
    use axum::body::Bytes;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    let (client, connection) = h2::client::handshake(tls).await.expect("h2");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut open = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone().ready().await.expect("ready");
        let request = axum::http::Request::post(url)
            .header("content-type", "application/json")
            .header("content-length", 4 * 1024 * 1024)
            .body(())
            .expect("request");
        let (response, mut body) = client.send_request(request, false).expect("send");
        body.reserve_capacity(1 << 20);
        body.send_data(Bytes::from(vec![b' '; 1 << 20]), false)
            .expect("data");
        open.push((client, response, body));
    }
    Box::new((DropAbort(driver), open))
}

/// Aborts the connection's driver task when the uploads are let go.
struct DropAbort(tokio::task::JoinHandle<()>);

impl Drop for DropAbort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! Reload hazards over the real binary: config, certificate and key paths
//! that are not regular files (a FIFO, `/dev/zero` through a symlink, a
//! directory, a socket) or are too large, and certificates that are expired,
//! not yet valid or do not match their key. At start-up each is exit 2 with a
//! message naming the flag; on reload each is refused and counted while the
//! last good version keeps serving, later rotations are still picked up, and
//! SIGTERM still ends the process.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{
    client, eventually, leaf_der, metric_at, pki, pki_at, run_to_exit, served_leaf, Spawned,
    Volume, REVIEW,
};
use persistence_webhook::server::reload::{MAX_CONFIG_BYTES, MAX_PEM_BYTES};
use serde_json::Value;

const CONFIG: &str =
    "data: {data1: {mountPath: /data/1}}\noutputs: {out-a: {mountPath: /outputs/a}}\n";
const DAY: Duration = Duration::from_secs(86400);
/// A guard against a hang, never a timing assertion.
const HANG: Duration = Duration::from_secs(60);

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Replaces the file a flag names (a symlink into `..data`) with whatever
/// `make` creates at a temporary path, in one rename.
fn swap(vol: &Volume, name: &str, make: impl FnOnce(&Path)) {
    let tmp = vol.path(&format!("{name}.swap"));
    make(&tmp);
    std::fs::rename(&tmp, vol.path(name)).expect("swap");
}

fn failures(kind: &str) -> String {
    format!("persistence_webhook_reloads_total{{kind=\"{kind}\",result=\"failure\"}}")
}

async fn wait_for_count(metrics: std::net::SocketAddr, sample: &str, want: f64) {
    eventually(&format!("{sample} = {want}"), || async {
        metric_at(metrics, sample).await == Some(want)
    })
    .await;
}

/// A review over TLS, answered 200 and allowed.
async fn assert_reviews(c: &reqwest::Client, addr: std::net::SocketAddr) {
    let resp = c
        .post(format!("https://localhost:{}/mutate", addr.port()))
        .header("content-type", "application/json")
        .body(REVIEW)
        .send()
        .await
        .expect("a review is answered");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

/// SIGTERM, then the exit status and every log line.
async fn stop(server: Spawned) -> (std::process::ExitStatus, Vec<String>) {
    server.terminate();
    let waited = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let end = std::time::Instant::now() + HANG;
        loop {
            if let Some(status) = server.child.try_wait().expect("wait") {
                let logs = server.logs.try_iter().collect::<Vec<_>>();
                return Some((status, logs));
            }
            if std::time::Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    waited
        .await
        .expect("join")
        .expect("the server did not exit after SIGTERM")
}

fn refusals<'a>(logs: &'a [String], message: &str) -> Vec<&'a str> {
    logs.iter()
        .filter(|l| l.contains(message))
        .map(String::as_str)
        .collect()
}

#[test]
fn start_refuses_unusable_files_and_certificates_naming_the_flag() {
    let now = SystemTime::now();
    let (good, other) = (pki(), pki());
    let expired = pki_at(now - 2 * DAY, DAY);
    let future = pki_at(now + 2 * DAY, DAY);
    // Comments are allowed in YAML and text outside PEM blocks is ignored:
    // both files would load but for their size.
    let big_config = format!("{CONFIG}#{}\n", " ".repeat(MAX_CONFIG_BYTES as usize));
    let big_cert = format!("{}{}\n", good.cert_pem, " ".repeat(MAX_PEM_BYTES as usize));
    let vol = Volume::new(&[
        ("config.yaml", CONFIG),
        ("tls.crt", &good.cert_pem),
        ("tls.key", &good.key_pem),
        ("other.key", &other.key_pem),
        ("expired.crt", &expired.cert_pem),
        ("expired.key", &expired.key_pem),
        ("future.crt", &future.cert_pem),
        ("future.key", &future.key_pem),
        ("big.yaml", &big_config),
        ("big.crt", &big_cert),
    ]);
    mkfifo(&vol.path("fifo"));
    std::os::unix::fs::symlink("/dev/zero", vol.path("zero")).expect("symlink");
    std::fs::create_dir(vol.path("dir")).expect("dir");
    let _socket = std::os::unix::net::UnixListener::bind(vol.path("socket")).expect("socket");

    let p = |name: &str| vol.arg(name);
    #[rustfmt::skip]
    let cases: Vec<([String; 3], &[&str])> = vec![
        ([p("fifo"), p("tls.crt"), p("tls.key")], &["--config", "it is a FIFO (named pipe), not a regular file"]),
        ([p("zero"), p("tls.crt"), p("tls.key")], &["--config", "it is a character device, not a regular file"]),
        ([p("dir"), p("tls.crt"), p("tls.key")], &["--config", "it is a directory, not a regular file"]),
        ([p("socket"), p("tls.crt"), p("tls.key")], &["--config", "it is a socket, not a regular file"]),
        ([p("big.yaml"), p("tls.crt"), p("tls.key")], &["--config", "larger than the limit of 16 MiB"]),
        ([p("config.yaml"), p("fifo"), p("tls.key")], &["--tls-cert", "FIFO (named pipe)"]),
        ([p("config.yaml"), p("tls.crt"), p("zero")], &["--tls-key", "character device"]),
        ([p("config.yaml"), p("big.crt"), p("tls.key")], &["--tls-cert", "larger than the limit of 1 MiB"]),
        ([p("config.yaml"), p("expired.crt"), p("expired.key")], &["--tls-cert", "the certificate expired at", "; now "]),
        ([p("config.yaml"), p("future.crt"), p("future.key")], &["--tls-cert", "the certificate is not valid before", "; now "]),
        ([p("config.yaml"), p("tls.crt"), p("other.key")], &["--tls-cert", "/ --tls-key", "the private key does not match the certificate"]),
    ];
    for ([config, cert, key], wants) in cases {
        let flags = [
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--config",
            &config,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let (status, stderr) = run_to_exit(&flags, HANG);
        let status = status.unwrap_or_else(|| panic!("{flags:?} hung; it said: {stderr}"));
        assert_eq!(status.code(), Some(2), "{flags:?}: {stderr}");
        for want in wants {
            assert!(
                stderr.contains(want),
                "{flags:?}: want {want:?} in: {stderr}"
            );
        }
    }
}

/// The config path swapped for a FIFO, then for `/dev/zero`: each refused
/// and counted, reviews still answered with the last good config, a later
/// certificate rotation still picked up, and SIGTERM still ends the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_config_that_is_a_fifo_or_dev_zero_and_keeps_going() {
    let (pki_a, pki_b) = (pki(), pki());
    let mut vol = Volume::serving(CONFIG, &pki_a);
    let server = Spawned::serving(&vol, &["--reload-interval", "50ms"], "info");
    let (addr, metrics) = (server.addr, server.metrics);
    let trusts_a = client(&[&pki_a]);

    swap(&vol, "config.yaml", mkfifo);
    wait_for_count(metrics, &failures("config"), 1.0).await;
    assert_reviews(&trusts_a, addr).await;

    swap(&vol, "config.yaml", |tmp| {
        std::os::unix::fs::symlink("/dev/zero", tmp).expect("symlink")
    });
    wait_for_count(metrics, &failures("config"), 2.0).await;
    assert_reviews(&trusts_a, addr).await;
    assert_eq!(
        metric_at(metrics, "persistence_webhook_config_generation").await,
        Some(1.0),
        "the last good config is still in use"
    );

    // The reload loop is not stuck: a new certificate is still served.
    vol.publish(&[("tls.crt", &pki_b.cert_pem), ("tls.key", &pki_b.key_pem)]);
    let want = leaf_der(&pki_b.cert_pem);
    eventually("the rotated certificate is served", || async {
        served_leaf(addr, &[&pki_a, &pki_b]).await.as_ref() == Ok(&want)
    })
    .await;
    assert_reviews(&client(&[&pki_b]), addr).await;

    let (status, logs) = stop(server).await;
    assert!(status.success(), "{status:?}");
    let refused = refusals(&logs, "Refused the new config");
    assert_eq!(refused.len(), 2, "logged once each: {refused:#?}");
    assert!(
        refused[0].contains("it is a FIFO (named pipe), not a regular file"),
        "{}",
        refused[0]
    );
    assert!(
        refused[1].contains("it is a character device, not a regular file"),
        "{}",
        refused[1]
    );
}

/// Certificates that must not be served: each refused and counted, the
/// last good one still presented to a TLS client, then a good rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_expired_future_mismatched_and_oversized_certificates() {
    let now = SystemTime::now();
    let (pki_a, pki_b) = (pki(), pki());
    let expired = pki_at(now - 2 * DAY, DAY);
    let future = pki_at(now + 2 * DAY, DAY);
    let big_cert = format!("{}{}\n", pki_a.cert_pem, " ".repeat(MAX_PEM_BYTES as usize));
    let mut vol = Volume::serving(CONFIG, &pki_a);
    let server = Spawned::serving(&vol, &["--reload-interval", "50ms"], "info");
    let (addr, metrics) = (server.addr, server.metrics);
    // Trusting every CA: were a refused certificate served, the handshake
    // would show it (or fail on its dates) instead of presenting A's.
    let every_ca = [&pki_a, &pki_b, &expired, &future];
    let served_a = leaf_der(&pki_a.cert_pem);

    let bad: [(&str, &str, &str); 4] = [
        (
            &expired.cert_pem,
            &expired.key_pem,
            "the certificate expired at",
        ),
        (
            &future.cert_pem,
            &future.key_pem,
            "the certificate is not valid before",
        ),
        (
            &pki_a.cert_pem,
            &pki_b.key_pem,
            "the private key does not match the certificate",
        ),
        (&big_cert, &pki_a.key_pem, "larger than the limit of 1 MiB"),
    ];
    for (n, (cert, key, _)) in bad.iter().enumerate() {
        vol.publish(&[("tls.crt", cert), ("tls.key", key)]);
        wait_for_count(metrics, &failures("certificate"), (n + 1) as f64).await;
        assert_eq!(
            served_leaf(addr, &every_ca).await,
            Ok(served_a.clone()),
            "case {n}: the last good certificate is still served"
        );
        assert_reviews(&client(&[&pki_a]), addr).await;
    }

    vol.publish(&[("tls.crt", &pki_b.cert_pem), ("tls.key", &pki_b.key_pem)]);
    let want = leaf_der(&pki_b.cert_pem);
    eventually("the good certificate is served", || async {
        served_leaf(addr, &every_ca).await.as_ref() == Ok(&want)
    })
    .await;
    assert_eq!(
        metric_at(
            metrics,
            "persistence_webhook_reloads_total{kind=\"certificate\",result=\"success\"}"
        )
        .await,
        Some(1.0)
    );

    let (status, logs) = stop(server).await;
    assert!(status.success(), "{status:?}");
    let refused = refusals(&logs, "Refused the new certificate");
    assert_eq!(refused.len(), bad.len(), "logged once each: {refused:#?}");
    for (line, (_, _, want)) in refused.iter().zip(bad.iter()) {
        assert!(line.contains(want), "want {want:?} in {line}");
        assert!(line.contains("--tls-cert"), "names the flag: {line}");
    }
}

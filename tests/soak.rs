//! Churn and resource ceilings, against the real binary (so its memory can
//! be read from /proc):
//!
//! - `soak_under_config_and_certificate_churn`: steady load while the config
//!   is replaced every second (valid and invalid versions alternating) and
//!   the certificate rotated every few seconds, the way Secret and ConfigMap
//!   volumes publish files. `SOAK_SECONDS` sets the duration (default 6, as
//!   in CI; `docs/hardening.md` has a longer run).
//! - `many_concurrent_large_reviews_stay_under_the_memory_ceiling`: 256
//!   concurrent reviews of ~1 MiB pods.
//!
//! Both print a `soak:`/`ceiling:` line with the figures.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use persistence_webhook::certs::{issue, CertRequest, Issued};
use serde_json::{json, Value};

const REVIEW: &[u8] = include_bytes!("fixtures/defaults/review.json");

fn config(outputs: &str) -> String {
    format!("data: {{data1: {{mountPath: /data/1}}}}\noutputs: {{{outputs}: {{mountPath: /outputs/x}}}}\n")
}

/// Refused at reload (relative mountPath), and recognisable if ever used:
/// its outputs store is `refused`.
const INVALID: &str =
    "data: {data1: {mountPath: relative}}\noutputs: {refused: {mountPath: /outputs/r}}\n";

fn pair() -> Issued {
    let req = CertRequest {
        service: "pw".into(),
        namespace: "soak".into(),
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().expect("ip")],
        validity: Duration::from_secs(3600),
    };
    issue(&req, SystemTime::now()).expect("issued")
}

/// A directory laid out like a Secret/ConfigMap volume (`..data` symlink swap).
struct Volume {
    dir: tempfile::TempDir,
    version: usize,
}

impl Volume {
    fn new(files: &[(&str, &str)]) -> Volume {
        let mut v = Volume {
            dir: tempfile::tempdir().expect("tempdir"),
            version: 0,
        };
        v.publish(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), v.path(name)).expect("link");
        }
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn publish(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let versioned = format!("..v{}", self.version);
        let vdir = self.dir.path().join(&versioned);
        std::fs::create_dir(&vdir).expect("dir");
        for (name, content) in files {
            std::fs::write(vdir.join(name), content).expect("write");
        }
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&versioned, &tmp).expect("tmp link");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap");
        // The kubelet removes the previous version after the swap.
        if self.version > 2 {
            let _ =
                std::fs::remove_dir_all(self.dir.path().join(format!("..v{}", self.version - 2)));
        }
    }
}

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_persistence-webhook"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("RUST_LOG", "warn,persistence_webhook::server=info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "Listening" {
                        let f = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                        let _ = tx.send((f("addr"), f("metrics_addr")));
                    }
                }
            }
        });
        let (addr, metrics) = rx.recv_timeout(Duration::from_secs(30)).expect("listening");
        Server {
            child,
            addr: addr.parse().expect("addr"),
            metrics: metrics.parse().expect("addr"),
        }
    }

    /// (current RSS, peak RSS) in KiB, from /proc.
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

fn client(cas: &[&Issued]) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(20))
        .http1_only();
    for ca in cas {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(ca.ca_cert_pem.as_bytes()).expect("CA"),
        );
    }
    b.build().expect("client")
}

fn outputs_store(answer: &Value) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str()?)
        .ok()?;
    let ops: Value = serde_json::from_slice(&raw).ok()?;
    let op = ops.as_array()?.iter().find(|op| {
        op["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/metadata/annotations"))
    })?;
    let text = op["value"].as_str().map(str::to_owned).or_else(|| {
        op["value"]["polyaxon.com/persistence-injected"]
            .as_str()
            .map(str::to_owned)
    })?;
    serde_json::from_str::<Value>(&text).ok()?["outputs"]
        .as_str()
        .map(str::to_owned)
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_config_and_certificate_churn() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let pairs: Vec<Issued> = (0..(seconds / 3 + 2)).map(|_| pair()).collect();
    let mut vol = Volume::new(&[
        ("config.yaml", &config("out-0")),
        ("tls.crt", &pairs[0].cert_pem),
        ("tls.key", &pairs[0].key_pem),
    ]);
    let p = |n: &str| vol.path(n).to_str().expect("utf-8").to_owned();
    let (cfg, crt, key) = (p("config.yaml"), p("tls.crt"), p("tls.key"));
    let server = Server::start(&[
        "--config",
        &cfg,
        "--tls-cert",
        &crt,
        "--tls-key",
        &key,
        "--reload-interval",
        "100ms",
    ]);
    let cas: Vec<&Issued> = pairs.iter().collect();
    let c = client(&cas);

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
    let text = metrics(server.metrics).await;
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
        metric(&text, "persistence_webhook_config_generation"),
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
    let pki = pair();
    let vol = Volume::new(&[
        ("config.yaml", &config("out")),
        ("tls.crt", &pki.cert_pem),
        ("tls.key", &pki.key_pem),
    ]);
    let p = |n: &str| vol.path(n).to_str().expect("utf-8").to_owned();
    let (cfg, crt, key) = (p("config.yaml"), p("tls.crt"), p("tls.key"));
    let server = Server::start(&[
        "--config",
        &cfg,
        "--tls-cert",
        &crt,
        "--tls-key",
        &key,
        "--request-timeout",
        "30s",
    ]);
    let c = client(&[&pki]);
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
                let answer: Value = r.json().await?;
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

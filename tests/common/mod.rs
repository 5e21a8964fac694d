//! Helpers shared by the server-level test files (`server`, `hostile`,
//! `soak`, `e2e`): certificates, a client that trusts only given CAs, files
//! published like a Kubernetes volume, the real binary started and its
//! addresses read from its log, and readers of answers and metrics.
//!
//! Each test file uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use persistence_webhook::certs::{issue, CertRequest, Issued};
use persistence_webhook::cli::{Cli, Command as Sub};
use persistence_webhook::serve::ServeArgs;
use serde_json::Value;

/// A real kube-apiserver capture: `kubectl create` of a pod, no annotation.
pub const REVIEW: &[u8] = include_bytes!("../fixtures/defaults/review.json");

/// A CA and a serving certificate for localhost / 127.0.0.1.
pub fn pki() -> Issued {
    pki_at(SystemTime::now(), Duration::from_secs(3600))
}

/// The same, issued at `at` (valid from 5 minutes before it) for `validity`:
/// expired or not yet valid certificates for the tests that need them.
pub fn pki_at(at: SystemTime, validity: Duration) -> Issued {
    let req = CertRequest {
        service: "persistence-webhook".into(),
        namespace: "test".into(),
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().expect("ip")],
        validity,
    };
    issue(&req, at).expect("issued")
}

/// The first certificate of a PEM chain, as DER.
pub fn leaf_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("valid PEM")
        .to_vec()
}

/// The leaf certificate (DER) the TLS server at `addr` presents to a client
/// that trusts only `cas` and asks for `localhost`; the handshake's error if
/// it fails (an untrusted or expired certificate).
pub async fn served_leaf(addr: SocketAddr, cas: &[&Issued]) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.ca_cert_pem.as_bytes())
            .expect("CA PEM");
        roots.add(der).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let chain = session.peer_certificates().ok_or("no certificate")?;
    Ok(chain.first().ok_or("an empty chain")?.to_vec())
}

/// The real binary run with `args` until it exits by itself, or killed
/// after `deadline` (a guard against a hang, not a timing assertion):
/// the exit status (`None` if it had to be killed) and what it wrote on stderr.
pub fn run_to_exit(
    args: &[&str],
    deadline: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_persistence-webhook"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let end = std::time::Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().expect("stderr reader"))
}

/// A plain-HTTP client (metrics port), with the process's rustls provider
/// installed first: reqwest panics building any client without one.
pub fn plain_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A client that trusts only `cas` (HTTP/2 by ALPN when offered).
pub fn client(cas: &[&Issued]) -> reqwest::Client {
    builder(cas).build().expect("client")
}

/// The same, HTTP/1.1 only, one connection per concurrent request: what the
/// kube-apiserver does.
pub fn client_h1(cas: &[&Issued]) -> reqwest::Client {
    builder(cas).http1_only().build().expect("client")
}

/// An HTTP/1.1 client from the source address `from` (as the API server
/// calls, one connection per concurrent request, kept alive between them).
pub fn client_h1_from(cas: &[&Issued], from: std::net::IpAddr) -> reqwest::Client {
    builder(cas)
        .http1_only()
        .local_address(from)
        .build()
        .expect("client")
}

/// An HTTP/2 client from the source address `from` that lets the server
/// send only `window` bytes of its answers until they are read: with an answer left unread, a client that
/// does not take its answers (the kernel's socket buffers cannot absorb
/// them, as they absorb an HTTP/1.1 answer of a few hundred KiB).
pub fn client_h2_window(cas: &[&Issued], window: u32, from: std::net::IpAddr) -> reqwest::Client {
    builder(cas)
        .local_address(from)
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(window)
        .http2_initial_connection_window_size(window)
        .build()
        .expect("client")
}

fn builder(cas: &[&Issued]) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(20));
    for ca in cas {
        let cert = reqwest::Certificate::from_pem(ca.ca_cert_pem.as_bytes()).expect("CA");
        b = b.add_root_certificate(cert);
    }
    b
}

/// `serve` flags for the files in `vol`, then `extra`, as the CLI parses them.
pub fn serve_args_for(vol: &Volume, extra: &[&str]) -> ServeArgs {
    let flags = vol.serve_flags(extra);
    serve_args(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `serve` flags as the CLI parses them, on 127.0.0.1 with free ports.
pub fn serve_args(args: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "persistence-webhook",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(args);
    match clap::Parser::try_parse_from(argv).expect("valid flags") {
        Cli {
            command: Sub::Serve(a),
        } => a,
        other => panic!("not serve: {other:?}"),
    }
}

/// Files laid out like a mounted Secret/ConfigMap volume: `..data` is a
/// symlink to a versioned directory, and each file a symlink through it.
pub struct Volume {
    dir: tempfile::TempDir,
    version: usize,
}

impl Volume {
    /// A volume holding `files` (name, content).
    pub fn new(files: &[(&str, &str)]) -> Volume {
        let mut v = Volume {
            dir: tempfile::tempdir().expect("tempdir"),
            version: 0,
        };
        v.publish(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), v.path(name))
                .expect("file link");
        }
        v
    }

    /// A volume with `config.yaml`, `tls.crt` and `tls.key`: what `serve` reads.
    pub fn serving(config: &str, pki: &Issued) -> Volume {
        Volume::new(&[
            ("config.yaml", config),
            ("tls.crt", &pki.cert_pem),
            ("tls.key", &pki.key_pem),
        ])
    }

    /// `--config`, `--tls-cert` and `--tls-key` into this volume, then `extra`.
    pub fn serve_flags(&self, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![
            "--config".to_owned(),
            self.arg("config.yaml"),
            "--tls-cert".to_owned(),
            self.arg("tls.crt"),
            "--tls-key".to_owned(),
            self.arg("tls.key"),
        ];
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        flags
    }

    /// The path a pod would read `name` at.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The same, as a flag value.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8 path").to_owned()
    }

    /// Publishes a new version atomically, as the kubelet does, and removes
    /// the version before the previous one.
    pub fn publish(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let versioned = format!("..2026_11_23_v{}", self.version);
        let vdir = self.dir.path().join(&versioned);
        std::fs::create_dir(&vdir).expect("version dir");
        for (name, content) in files {
            std::fs::write(vdir.join(name), content).expect("write");
        }
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&versioned, &tmp).expect("tmp link");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap");
        if self.version > 2 {
            let old = format!("..2026_11_23_v{}", self.version - 2);
            let _ = std::fs::remove_dir_all(self.dir.path().join(old));
        }
    }
}

/// The real binary running `serve` with JSON logs.
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// The HTTPS address it bound.
    pub addr: SocketAddr,
    /// The metrics address it bound.
    pub metrics: SocketAddr,
    /// Every log line, as it arrives.
    pub logs: std::sync::mpsc::Receiver<String>,
}

impl Spawned {
    /// Starts `persistence-webhook serve <args>` on free ports and waits for
    /// its "Listening" line (so `rust_log` must keep `persistence_webhook::server` at info).
    pub fn start(args: &[&str], rust_log: &str) -> Spawned {
        Spawned::start_with_open_files(args, rust_log, None)
    }

    /// [`Spawned::start`], with the open-files limit (soft and hard) set to
    /// `open_files` before the binary runs, when given.
    pub fn start_with_open_files(
        args: &[&str],
        rust_log: &str,
        open_files: Option<u64>,
    ) -> Spawned {
        // No shutdown delay unless the test asks for one: tests stop servers often.
        let delay: &[&str] = if args.contains(&"--shutdown-delay") {
            &[]
        } else {
            &["--shutdown-delay", "0s"]
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_persistence-webhook"));
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe and touches no memory
            // of the parent; this closure runs in the child before exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "json"])
            .args(delay)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let stderr = child.stderr.take().expect("stderr");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (log_tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "Listening" {
                        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                        let _ = addr_tx.send((field("addr"), field("metrics_addr")));
                    }
                }
                let _ = log_tx.send(line);
            }
        });
        let Ok((addr, metrics)) = addr_rx.recv_timeout(Duration::from_secs(30)) else {
            let said: Vec<String> = logs.try_iter().collect();
            panic!("the server did not start; it said: {said:#?}");
        };
        Spawned {
            child,
            addr: addr.parse().expect("an address"),
            metrics: metrics.parse().expect("an address"),
            logs,
        }
    }

    /// (current RSS, peak RSS) in KiB, from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(path).unwrap_or_default();
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

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The binary serving the files in `vol`, with `extra` flags.
    pub fn serving(vol: &Volume, extra: &[&str], rust_log: &str) -> Spawned {
        let flags = vol.serve_flags(extra);
        Spawned::start(
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
            rust_log,
        )
    }

    /// The exit status, once the process ends by itself (after `terminate`).
    pub fn stop_waiting(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate();
        self.child.wait().expect("wait")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw TLS connector that trusts `ca` and offers `alpn` (`h2`,
/// `http/1.1`), for cases an HTTP client library cannot express.
pub fn tls_connector(ca: &Issued, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(ca.ca_cert_pem.as_bytes())
                .expect("CA PEM"),
        )
        .expect("CA root");
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
}

/// POSTs `body` as JSON to `/mutate` of the server on `port` (its
/// certificate names `localhost`): the AdmissionReview it answers.
pub async fn answer_to(
    client: &reqwest::Client,
    port: u16,
    body: impl Into<reqwest::Body>,
) -> Value {
    client
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("an AdmissionReview")
}

/// The JSON Patch in an AdmissionReview answer, decoded.
pub fn patch_of(answer: &Value) -> Option<Vec<Value>> {
    use base64::Engine as _;
    let b64 = answer["response"]["patch"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    serde_json::from_slice::<Value>(&raw)
        .ok()?
        .as_array()
        .cloned()
}

/// The outputs store recorded in the injected annotation the patch adds.
pub fn outputs_store(answer: &Value) -> Option<String> {
    let ops = patch_of(answer)?;
    let op = ops.iter().find(|op| {
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

/// How long [`eventually`] polls before it gives up: a guard against a
/// hang, not a timing assertion.
pub const HANG: Duration = Duration::from_secs(30);

/// The one polling helper of the tests: awaits `check` until it holds, or
/// panics naming `what` once [`HANG`] has passed. A synchronous check is
/// written `|| std::future::ready(cond)`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + HANG;
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {HANG:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] from synchronous code (a test without a runtime).
pub fn eventually_blocking(what: &str, mut check: impl FnMut() -> bool) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
        .block_on(eventually(what, || std::future::ready(check())));
}

/// One sample's value from a Prometheus text page (the line starting with `prefix`).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `GET /metrics` on the plain port.
pub async fn metrics_page(addr: SocketAddr) -> Option<String> {
    // Even a plain-HTTP reqwest client builds a rustls config, which panics
    // ("No provider set") unless a provider was installed first: a test that
    // reads metrics before making a TLS client would otherwise be flaky.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// One metric's value read from a server's metrics port.
pub async fn metric_at(addr: SocketAddr, prefix: &str) -> Option<f64> {
    metric(&metrics_page(addr).await?, prefix)
}

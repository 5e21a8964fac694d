//! Loading the config and the serving certificate, at start and then again
//! whenever their files' *content* changes. Content is polled rather than
//! watched with inotify: Secret and ConfigMap volumes publish a new version by
//! swapping a `..data` symlink, which close-write events miss
//! (kubernetes/kubernetes#111947).
//!
//! A new version that does not load is refused: the last good one keeps
//! serving, the failure is logged once with its reason and counted. Files are
//! read through [`crate::file`]: regular files only, capped, never waiting on a
//! writer; the poll runs on a thread of its own, so neither the async workers
//! nor shutdown ever wait for a read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use tokio::sync::watch as signal;

use super::metrics::Reloaded;
use super::tls::Resolver;
use super::AppState;
use crate::certs::credentials::{self, Credentials, Culprit, TlsError};
use crate::certs::{self, CertRequest};
use crate::config::Config;
use crate::file::{self, FileError};

/// The largest `--config` file read, in bytes. A real config is a few KiB;
/// this leaves room for thousands of stores and still bounds what a poll
/// holds (the last version and the new one).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

pub use crate::file::MAX_PEM_BYTES;

/// A poll still running after this long is reported (once): a read is stuck
/// on a hung volume, and new versions wait for it.
const SLOW_POLL: Duration = Duration::from_secs(30);

/// What start-up loaded, and how to watch it.
#[derive(Debug)]
pub struct Loaded {
    /// The config to serve.
    pub config: Config,
    /// The certificate to serve.
    pub credentials: Credentials,
    /// The files to poll for new versions.
    pub watcher: Watcher,
}

/// Serves `creds` from the next handshake on, and says so in the metrics:
/// the one way a new certificate is taken into use, from files or from the
/// in-cluster Secret.
pub fn swap_certificate(state: &AppState, resolver: &Resolver, creds: Credentials) {
    resolver.store(creds.key);
    state.metrics.cert_expiry.set(creds.not_after);
    state.metrics.reload(Reloaded::Certificate, true);
}

/// Loads everything `serve` needs, or says which flag and file to fix.
///
/// With `demo_dir`, a missing config is the built-in example and the
/// certificate is a throwaway one for localhost whose CA is written there.
/// With `in_cluster`, the certificate is that one (from the in-cluster
/// Secret, which keeps it current itself) and no files are polled for it.
pub fn load(
    config: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    demo_dir: Option<PathBuf>,
    in_cluster: Option<Credentials>,
) -> Result<Loaded> {
    // The clock is read here, at the edge; certificates are judged against it.
    let now = SystemTime::now();
    let mut watcher = Watcher::default();
    let config = match config {
        Some(path) => {
            let file = Watched::read(path, MAX_CONFIG_BYTES);
            let config = parse_config(&file.last)
                .map_err(|e| anyhow!("--config {}: {e}", file.path.display()))?;
            watcher.config = Some(file);
            config
        }
        None if demo_dir.is_some() => Config::example(),
        None => {
            return Err(anyhow!(
                "--config FILE is required (or --demo to try the built-in example)"
            ))
        }
    };
    let credentials = match (tls_cert, tls_key, demo_dir, in_cluster) {
        (None, None, None, Some(creds)) => creds,
        (Some(_), _, _, Some(_)) | (_, Some(_), _, Some(_)) => {
            return Err(anyhow!(
                "--certificates in-cluster takes the certificate from its Secret: drop --tls-cert and --tls-key"
            ))
        }
        (Some(cert), Some(key), _, None) => {
            let pair = CertPair {
                cert: Watched::read(cert, MAX_PEM_BYTES),
                key: Watched::read(key, MAX_PEM_BYTES),
                waiting: false,
            };
            let creds = pair.load(now).map_err(|refused| anyhow!(refused.reason))?;
            watcher.cert = Some(pair);
            creds
        }
        (None, None, Some(dir), _) => demo_credentials(&dir, now)?,
        _ => {
            return Err(anyhow!(
                "--tls-cert FILE and --tls-key FILE are required together (or --demo for a throwaway certificate)"
            ))
        }
    };
    Ok(Loaded {
        config,
        credentials,
        watcher,
    })
}

fn demo_credentials(dir: &Path, now: SystemTime) -> Result<Credentials> {
    let req = CertRequest {
        service: "persistence-webhook".into(),
        namespace: "demo".into(),
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse()?, "::1".parse()?],
        validity: Duration::from_secs(7 * 86400),
    };
    let issued = certs::issue(&req, now).context("making the demo certificate")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create --demo-dir {}", dir.display()))?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &issued.ca_cert_pem)
        .with_context(|| format!("cannot write {}", ca.display()))?;
    tracing::info!(
        ca = %ca.display(),
        "Demo mode: built-in example config and a throwaway certificate for localhost; trust it with curl --cacert {}",
        ca.display()
    );
    credentials::load(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes(), now)
        .map_err(|e| anyhow!("the demo certificate: {e}"))
}

fn parse_config(bytes: &std::result::Result<Vec<u8>, FileError>) -> Result<Config, String> {
    let bytes = bytes.as_ref().map_err(ToString::to_string)?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    Config::from_yaml(text).map_err(|e| e.to_string())
}

/// A file and the content last seen there (or why it could not be read).
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    /// The most this file may hold.
    limit: u64,
    last: std::result::Result<Vec<u8>, FileError>,
}

impl Watched {
    fn read(path: PathBuf, limit: u64) -> Watched {
        let last = file::read(&path, limit);
        Watched { path, limit, last }
    }

    /// Reads again; true when the content (or the read error) changed.
    fn refresh(&mut self) -> bool {
        let now = file::read(&self.path, self.limit);
        if now == self.last {
            return false;
        }
        self.last = now;
        true
    }
}

/// The serving certificate chain and its key.
#[derive(Debug)]
struct CertPair {
    cert: Watched,
    key: Watched,
    /// The current files were refused only for being not yet valid: they are
    /// tried again on every poll, since time alone makes them good.
    waiting: bool,
}

/// Why a certificate/key pair was not taken into use, naming the flags.
#[derive(Debug)]
struct Refusal {
    reason: String,
    not_yet_valid: bool,
}

impl CertPair {
    /// The credentials in the files as last read, checked at `now`.
    fn load(&self, now: SystemTime) -> std::result::Result<Credentials, Refusal> {
        let (cert_path, key_path) = (self.cert.path.display(), self.key.path.display());
        let refused = |reason: String| Refusal {
            reason,
            not_yet_valid: false,
        };
        let cert = (self.cert.last.as_ref())
            .map_err(|e| refused(format!("--tls-cert {cert_path}: {e}")))?;
        let key =
            (self.key.last.as_ref()).map_err(|e| refused(format!("--tls-key {key_path}: {e}")))?;
        credentials::load(cert, key, now).map_err(|e| Refusal {
            not_yet_valid: matches!(e, TlsError::NotYetValid(_)),
            reason: match e.file() {
                Culprit::Cert => format!("--tls-cert {cert_path}: {e}"),
                Culprit::Key => format!("--tls-key {key_path}: {e}"),
                Culprit::Both => format!("--tls-cert {cert_path} / --tls-key {key_path}: {e}"),
            },
        })
    }
}

/// The files `serve` reloads.
#[derive(Debug, Default)]
pub struct Watcher {
    config: Option<Watched>,
    cert: Option<CertPair>,
}

impl Watcher {
    fn is_empty(&self) -> bool {
        self.config.is_none() && self.cert.is_none()
    }

    /// One poll: takes any changed file that loads into use, judging
    /// certificates at `now`.
    pub fn poll(&mut self, state: &AppState, resolver: &Resolver, now: SystemTime) {
        if let Some(file) = &mut self.config {
            if file.refresh() {
                match parse_config(&file.last) {
                    Ok(config) => {
                        state.swap_config(config);
                        state.metrics.reload(Reloaded::Config, true);
                        tracing::info!(path = %file.path.display(), generation = state.metrics.config_generation.get(), "Reloaded the config");
                    }
                    Err(reason) => {
                        state.metrics.reload(Reloaded::Config, false);
                        tracing::error!(path = %file.path.display(), %reason, "Refused the new config; still serving the last good one");
                    }
                }
            }
        }
        if let Some(pair) = &mut self.cert {
            // Both files are read on every poll so that a pair written one
            // file at a time is retried until the two match.
            let changed = pair.cert.refresh() | pair.key.refresh();
            if !changed && !pair.waiting {
                return;
            }
            match pair.load(now) {
                Ok(creds) => {
                    pair.waiting = false;
                    let not_after = creds.not_after;
                    swap_certificate(state, resolver, creds);
                    tracing::info!(path = %pair.cert.path.display(), not_after, "Reloaded the serving certificate");
                }
                Err(refused) => {
                    let was_waiting = std::mem::replace(&mut pair.waiting, refused.not_yet_valid);
                    // Files still waiting for their notBefore were reported
                    // when they arrived: once per version, not per poll.
                    if changed || !(was_waiting && refused.not_yet_valid) {
                        state.metrics.reload(Reloaded::Certificate, false);
                        tracing::error!(cert = %pair.cert.path.display(), key = %pair.key.path.display(), reason = %refused.reason, "Refused the new certificate; still serving the last good one");
                    }
                }
            }
        }
    }
}

/// Polls every `every` until `stop` turns true.
pub async fn watch(
    watcher: Watcher,
    state: Arc<AppState>,
    resolver: Arc<Resolver>,
    every: Duration,
    stop: signal::Receiver<bool>,
) {
    if watcher.is_empty() {
        return;
    }
    let poll = move |w: &mut Watcher| w.poll(&state, &resolver, SystemTime::now());
    polling(watcher, poll, every, stop).await;
}

/// Runs `poll` on `item` every `every`, each time on a thread of its own,
/// until `stop` turns true; returns then at once, even if a poll is still
/// running (its thread is left to end with the process).
async fn polling<T, F>(item: T, poll: F, every: Duration, mut stop: signal::Receiver<bool>)
where
    T: Send + 'static,
    F: Fn(&mut T) + Send + Sync + 'static,
{
    let poll = Arc::new(poll);
    let mut item = Some(item);
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(mut current) = item.take() else {
            return;
        };
        let (done, mut polled) = tokio::sync::oneshot::channel();
        let run = poll.clone();
        // A plain thread, not `spawn_blocking`: dropping the runtime waits
        // for every blocking-pool task, so a read stuck on a hung volume
        // (NFS, FUSE) would hold up the exit after a clean shutdown. A
        // detached thread does not; file reads never run on the workers.
        let spawned = std::thread::Builder::new()
            .name("reload-poll".into())
            .spawn(move || {
                run(&mut current);
                let _ = done.send(current);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "Cannot start the reload poll; reloading stops");
            return;
        }
        let slow = tokio::time::sleep(SLOW_POLL);
        tokio::pin!(slow);
        let mut warned = false;
        loop {
            tokio::select! {
                result = &mut polled => match result {
                    Ok(back) => {
                        if warned {
                            tracing::info!("The slow reload poll has finished");
                        }
                        item = Some(back);
                        break;
                    }
                    Err(_) => {
                        tracing::error!("The reload poll failed; reloading stops");
                        return;
                    }
                },
                () = &mut slow, if !warned => {
                    warned = true;
                    tracing::warn!(after = ?SLOW_POLL, "A reload poll is still running (a file read is stuck?); new versions wait for it");
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Limits;

    const DAY: Duration = Duration::from_secs(86400);

    fn issue(at: SystemTime) -> certs::Issued {
        let req = CertRequest {
            service: "s".into(),
            namespace: "n".into(),
            dns: vec![],
            ips: vec![],
            validity: 7 * DAY,
        };
        certs::issue(&req, at).expect("issued")
    }

    fn count(state: &AppState, result: &str) -> String {
        let sample = format!(
            "persistence_webhook_reloads_total{{kind=\"certificate\",result=\"{result}\"}} "
        );
        let text = state.metrics.render();
        let line = text.lines().find(|l| l.starts_with(&sample));
        line.map(|l| l[sample.len()..].to_owned())
            .unwrap_or_default()
    }

    /// A rotated certificate whose notBefore is still ahead (this host's
    /// clock is behind the issuer's): refused and reported once, then taken
    /// when its time comes, without a new version of the files.
    #[test]
    fn a_certificate_not_yet_valid_is_taken_when_its_time_comes() {
        let now = SystemTime::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name);
        let write = |name: &str, text: &str| std::fs::write(path(name), text).expect("write");
        let (first, next) = (issue(now), issue(now + DAY));
        write("config.yaml", "data: {data1: {mountPath: /data/1}}\n");
        write("tls.crt", &first.cert_pem);
        write("tls.key", &first.key_pem);
        let loaded = load(
            Some(path("config.yaml")),
            Some(path("tls.crt")),
            Some(path("tls.key")),
            None,
            None,
        )
        .expect("loads");
        let limits = Limits {
            max_body_bytes: 1024,
            request_timeout: Duration::from_secs(1),
            max_in_flight: 1,
            ..Limits::default()
        };
        let state = AppState::new(loaded.config, limits);
        let resolver = Resolver::new(loaded.credentials.key);
        let mut watcher = loaded.watcher;
        let served = |r: &Resolver| r.current().cert[0].to_vec();
        let first_der = served(&resolver);

        write("tls.crt", &next.cert_pem);
        write("tls.key", &next.key_pem);
        for (at, failures, successes, what) in [
            (now, "1", "0", "refused when it arrives"),
            (now + DAY / 2, "1", "0", "still waiting, not reported again"),
            (now + DAY, "1", "1", "taken once valid"),
        ] {
            watcher.poll(&state, &resolver, at);
            assert_eq!(count(&state, "failure"), failures, "{what}");
            assert_eq!(count(&state, "success"), successes, "{what}");
            let want_next = successes == "1";
            assert_eq!(served(&resolver) != first_der, want_next, "{what}");
        }
    }

    /// The runtime ends (as `serve` does after shutdown) while a poll is
    /// stuck in a read: neither `polling` nor the runtime's drop waits for it.
    #[test]
    fn stop_does_not_wait_for_a_stuck_poll() {
        let (ended_tx, ended) = std::sync::mpsc::channel();
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let stuck = std::sync::Mutex::new(stuck);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
                let (stop, stop_rx) = signal::channel(false);
                let poll = move |_: &mut ()| {
                    let _ = started_tx.send(());
                    // Stuck until the test lets go (it does only at the end).
                    let _ = stuck.lock().map(|rx| rx.recv());
                };
                let task = tokio::spawn(polling((), poll, Duration::from_millis(10), stop_rx));
                started.recv().await.expect("a poll started");
                stop.send(true).expect("the poller listens");
                task.await.expect("polling returned");
            });
            drop(rt);
            let _ = ended_tx.send(());
        });
        let result = ended.recv_timeout(Duration::from_secs(60));
        let _ = release.send(());
        result.expect("stop and the runtime's end did not wait for the stuck poll");
    }
}

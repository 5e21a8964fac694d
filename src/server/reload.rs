//! Loading the config and the serving certificate, at start and then again
//! whenever their files' *content* changes. Content is polled rather than
//! watched with inotify: Secret and ConfigMap volumes publish a new version by
//! swapping a `..data` symlink, which close-write events miss
//! (kubernetes/kubernetes#111947).
//!
//! A new version that does not load is refused: the last good one keeps
//! serving, the failure is logged once with its reason and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use tokio::sync::watch as signal;

use super::metrics::Reloaded;
use super::tls::{self, Credentials, Resolver};
use super::AppState;
use crate::certs::{self, CertRequest};
use crate::config::Config;

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

/// Loads everything `serve` needs, or says which flag and file to fix.
///
/// With `demo_dir`, a missing config is the built-in example and the
/// certificate is a throwaway one for localhost whose CA is written there.
pub fn load(
    config: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    demo_dir: Option<PathBuf>,
) -> Result<Loaded> {
    let mut watcher = Watcher::default();
    let config = match config {
        Some(path) => {
            let file = Watched::read(path);
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
    let credentials = match (tls_cert, tls_key, demo_dir) {
        (Some(cert), Some(key), _) => {
            let (cert, key) = (Watched::read(cert), Watched::read(key));
            let creds = parse_credentials(&cert.last, &key.last).map_err(|e| {
                anyhow!(
                    "--tls-cert {} / --tls-key {}: {e}",
                    cert.path.display(),
                    key.path.display()
                )
            })?;
            watcher.cert = Some((cert, key));
            creds
        }
        (None, None, Some(dir)) => demo_credentials(&dir)?,
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

fn demo_credentials(dir: &Path) -> Result<Credentials> {
    let req = CertRequest {
        service: "persistence-webhook".into(),
        namespace: "demo".into(),
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse()?, "::1".parse()?],
        validity: Duration::from_secs(7 * 86400),
    };
    let issued = certs::issue(&req, SystemTime::now()).context("making the demo certificate")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create --demo-dir {}", dir.display()))?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &issued.ca_cert_pem)
        .with_context(|| format!("cannot write {}", ca.display()))?;
    tracing::info!(
        ca = %ca.display(),
        "Demo mode: built-in example config and a throwaway certificate for localhost; trust it with curl --cacert"
    );
    tls::load(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
        .map_err(|e| anyhow!("the demo certificate: {e}"))
}

fn parse_config(bytes: &std::result::Result<Vec<u8>, String>) -> Result<Config, String> {
    let bytes = bytes.as_ref().map_err(Clone::clone)?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    Config::from_yaml(text).map_err(|e| e.to_string())
}

fn parse_credentials(
    cert: &std::result::Result<Vec<u8>, String>,
    key: &std::result::Result<Vec<u8>, String>,
) -> Result<Credentials, String> {
    let cert = cert.as_ref().map_err(Clone::clone)?;
    let key = key.as_ref().map_err(Clone::clone)?;
    tls::load(cert, key).map_err(|e| e.to_string())
}

/// A file and the content last seen there (or why it could not be read).
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    last: std::result::Result<Vec<u8>, String>,
}

impl Watched {
    fn read(path: PathBuf) -> Watched {
        let last = read(&path);
        Watched { path, last }
    }

    /// Reads again; true when the content (or the read error) changed.
    fn refresh(&mut self) -> bool {
        let now = read(&self.path);
        if now == self.last {
            return false;
        }
        self.last = now;
        true
    }
}

fn read(path: &Path) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// The files `serve` reloads.
#[derive(Debug, Default)]
pub struct Watcher {
    config: Option<Watched>,
    cert: Option<(Watched, Watched)>,
}

impl Watcher {
    fn is_empty(&self) -> bool {
        self.config.is_none() && self.cert.is_none()
    }

    /// One poll: takes any changed file that loads into use.
    pub fn poll(&mut self, state: &AppState, resolver: &Resolver) {
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
        if let Some((cert, key)) = &mut self.cert {
            // Both files are read on every poll so that a pair written one
            // file at a time is retried until the two match.
            let changed = cert.refresh() | key.refresh();
            if changed {
                match parse_credentials(&cert.last, &key.last) {
                    Ok(creds) => {
                        resolver.store(creds.key);
                        state.metrics.cert_expiry.set(creds.not_after);
                        state.metrics.reload(Reloaded::Certificate, true);
                        tracing::info!(path = %cert.path.display(), not_after = creds.not_after, "Reloaded the serving certificate");
                    }
                    Err(reason) => {
                        state.metrics.reload(Reloaded::Certificate, false);
                        tracing::error!(cert = %cert.path.display(), key = %key.path.display(), %reason, "Refused the new certificate; still serving the last good one");
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
    mut stop: signal::Receiver<bool>,
) {
    if watcher.is_empty() {
        return;
    }
    let mut watcher = Some(watcher);
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(mut w) = watcher.take() else { return };
        let (state, resolver) = (state.clone(), resolver.clone());
        // File reads may block (network volumes): keep them off the workers.
        match tokio::task::spawn_blocking(move || {
            w.poll(&state, &resolver);
            w
        })
        .await
        {
            Ok(w) => watcher = Some(w),
            Err(e) => {
                tracing::error!(error = %e, "The reload poll failed; reloading stops");
                return;
            }
        }
    }
}

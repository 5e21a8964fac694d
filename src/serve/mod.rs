//! `persistence-webhook serve`, the command: its flags ([`ServeArgs`]) and
//! the start-up that wires the server's rooms together. The rules between
//! flags are checked, the certificate is found (files, `--demo`, or the
//! in-cluster Secret, read before anything is bound) and the config loaded;
//! then the server's state and metrics are built, both ports bound and
//! served, and the reload and in-cluster certificate loops started beside
//! them. [`run`] serves until SIGTERM or SIGINT, then drains.
//!
//! This module only wires: serving is `crate::server`'s, the certificate
//! loop `crate::cluster::certificates`'.

mod args;

pub use args::{flags_in, ServeArgs};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::certs::credentials::Credentials;
use crate::cluster::certificates::{self, CertificateMetrics};
use crate::config::Role;
use crate::server::listener::{self, ConnLimits, Listener};
use crate::server::metrics::{Metrics, Port, Reloaded};
use crate::server::peers::{self, Share};
use crate::server::{metrics_router, reload, router, tls, AppState, Limits};

/// The target of the lines start-up and shutdown log: the server's, as
/// they have always had (operators' `RUST_LOG` filters name it).
const LOG_TARGET: &str = "persistence_webhook::server";

/// A started server: where it listens, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The HTTPS address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The plain-HTTP metrics address actually bound.
    pub metrics_addr: SocketAddr,
    /// The shared state (config, metrics).
    pub state: Arc<AppState>,
    stop: tokio::sync::watch::Sender<bool>,
    drain: Duration,
    delay: Duration,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight reviews finish (up to the drain
    /// timeout), and waits until everything has stopped.
    pub async fn shutdown(self) -> Result<()> {
        self.state.set_draining();
        let _ = self.stop.send(true);
        self.task.await.context("the server task failed")?
    }
}

/// Loads, checks and binds everything, then serves in the background.
pub async fn start(args: ServeArgs) -> Result<Running> {
    let ServeArgs {
        addr,
        metrics_addr,
        config,
        tls_cert,
        tls_key,
        demo,
        demo_dir,
        reload_interval,
        max_body_bytes,
        max_body_buffer_bytes,
        request_timeout,
        body_read_timeout,
        header_read_timeout,
        idle_timeout,
        max_in_flight,
        max_connections,
        max_connections_per_peer,
        max_metrics_connections,
        drain_timeout,
        shutdown_delay,
        log_format: _,
        bounds,
        certificates,
    } = args;
    let max_connections_per_peer = peer_cap(
        max_body_bytes,
        max_body_buffer_bytes,
        max_connections,
        max_connections_per_peer,
    )?;

    // Everything is loaded and checked before a socket is bound.
    let in_cluster = if certificates.in_cluster() {
        if demo {
            anyhow::bail!("--demo makes its own throwaway certificate: drop --certificates in-cluster, or --demo");
        }
        if tls_cert.is_some() || tls_key.is_some() {
            anyhow::bail!("--certificates in-cluster takes the certificate from its Secret: drop --tls-cert and --tls-key");
        }
        Some(certificates::prepare(&certificates).await?)
    } else {
        None
    };
    let loaded = reload::load(
        config,
        tls_cert,
        tls_key,
        demo.then_some(demo_dir),
        in_cluster.as_ref().map(|c| c.credentials.clone()),
    )?;
    let limits = Limits {
        max_body_bytes,
        request_timeout: *request_timeout,
        max_in_flight,
        max_body_buffer_bytes,
        body_read_timeout: *body_read_timeout,
        bounds: bounds.into(),
    };
    let open_files = listener::raise_open_files_limit();
    let wanted_files = (max_connections + max_metrics_connections) as u64 + 64;
    if let Some(have) = open_files.filter(|have| *have < wanted_files) {
        tracing::warn!(
            target: LOG_TARGET,
            open_files = have,
            needed = wanted_files,
            "The open-files limit is below --max-connections + --max-metrics-connections + 64: connections may be refused for want of descriptors before the limit is reached"
        );
    }
    let (metrics, certificate_metrics) = metrics(in_cluster.is_some());
    let state = Arc::new(AppState::with_metrics(
        loaded.config.clone(),
        limits,
        metrics,
    ));
    state.metrics.cert_expiry.set(loaded.credentials.not_after);
    let resolver = Arc::new(tls::Resolver::new(loaded.credentials.key.clone()));

    let webhook_socket = bind(addr, "--addr")?;
    let metrics_socket = bind(metrics_addr, "--metrics-addr")?;
    let bound = webhook_socket
        .local_addr()
        .context("reading the bound address")?;
    let metrics_bound = metrics_socket
        .local_addr()
        .context("reading the bound metrics address")?;

    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(resolver.clone())));
    // Each port splits its own connections; the metrics port has no bodies
    // to share, and a smaller cap, within which one peer may hold at most
    // as many as on the webhook port.
    let conn_limits = |max_connections: usize| ConnLimits {
        max_connections,
        header_read_timeout: *header_read_timeout,
        idle_timeout: *idle_timeout,
        request_timeout: *request_timeout,
        peer_share: Share::of(
            max_connections_per_peer.min(max_connections),
            max_connections,
            max_body_buffer_bytes,
            max_body_bytes,
            max_in_flight,
        ),
    };
    let webhook = Listener {
        socket: webhook_socket,
        tls: Some(tls),
        app: router(state.clone()),
        limits: conn_limits(max_connections),
        port: Port::Webhook,
    };
    let metrics = Listener {
        socket: metrics_socket,
        tls: None,
        app: metrics_router(state.clone()),
        limits: conn_limits(max_metrics_connections),
        port: Port::Metrics,
    };

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (metrics_stop, metrics_stop_rx) = tokio::sync::watch::channel(false);
    // Both are there exactly in cluster mode (`metrics(in_cluster.is_some())`).
    let certificates_task = in_cluster.zip(certificate_metrics).map(|(c, metrics)| {
        let handle = ServerCertificate {
            state: state.clone(),
            resolver: resolver.clone(),
        };
        tokio::spawn(c.run(handle, metrics, metrics_stop_rx.clone()))
    });
    let reload_task = tokio::spawn(reload::watch(
        loaded.watcher,
        state.clone(),
        resolver,
        *reload_interval,
        metrics_stop_rx.clone(),
    ));
    let metrics_task = tokio::spawn(listener::serve(
        metrics,
        state.metrics.clone(),
        metrics_stop_rx,
        Duration::from_secs(1),
    ));
    let webhook_task = listener::serve(webhook, state.metrics.clone(), stop_rx, *drain_timeout);
    // The metrics port (with /readyz answering 503) and the reloader stay up
    // until the webhook port has drained.
    let task = tokio::spawn(async move {
        webhook_task.await;
        let _ = metrics_stop.send(true);
        metrics_task.await.context("the metrics task failed")?;
        let _ = reload_task.await;
        if let Some(task) = certificates_task {
            // Gives the Lease up, so another replica takes over at once.
            let _ = task.await;
        }
        Ok(())
    });

    tracing::info!(
        target: LOG_TARGET,
        addr = %bound,
        metrics_addr = %metrics_bound,
        stores = loaded.config.stores(Role::Data).len() + loaded.config.stores(Role::Outputs).len(),
        max_connections,
        max_connections_per_peer,
        max_in_flight,
        open_files,
        demo,
        "Listening"
    );
    Ok(Running {
        addr: bound,
        metrics_addr: metrics_bound,
        state,
        stop,
        drain: *drain_timeout,
        delay: *shutdown_delay,
        task,
    })
}

/// The process's metrics, in one registry: the server's, and with
/// `in_cluster` the certificate loop's, registered into it.
pub fn metrics(in_cluster: bool) -> (Metrics, Option<CertificateMetrics>) {
    let mut metrics = Metrics::new();
    let certificates = in_cluster.then(|| {
        let certificates = CertificateMetrics::default();
        certificates.register(metrics.registry());
        certificates
    });
    (metrics, certificates)
}

/// The certificate loop's handle on the server: the resolver every
/// handshake reads, and the reload metrics (through the reload path's
/// [`reload::swap_certificate`], the one way a certificate is taken into
/// use).
struct ServerCertificate {
    state: Arc<AppState>,
    resolver: Arc<tls::Resolver>,
}

impl certificates::Serving for ServerCertificate {
    fn swap(&self, credentials: Credentials) {
        reload::swap_certificate(&self.state, &self.resolver, credentials);
    }

    fn refused(&self) {
        self.state.metrics.reload(Reloaded::Certificate, false);
    }
}

/// The connections one peer may hold, after the rules between the limit
/// flags: the body buffer holds at least the largest body, and a peer's
/// share is at most the port's.
fn peer_cap(
    max_body_bytes: usize,
    max_body_buffer_bytes: usize,
    max_connections: usize,
    max_connections_per_peer: Option<usize>,
) -> Result<usize> {
    if max_body_buffer_bytes < max_body_bytes {
        anyhow::bail!(
            "--max-body-buffer-bytes ({max_body_buffer_bytes}) must be at least --max-body-bytes ({max_body_bytes}), or no body of the largest size could ever be received"
        );
    }
    match max_connections_per_peer {
        Some(n) if n > max_connections => anyhow::bail!(
            "--max-connections-per-peer ({n}) must be at most --max-connections ({max_connections}): lower --max-connections-per-peer, or raise --max-connections"
        ),
        Some(n) => Ok(n),
        // Unset, it follows a lowered --max-connections down.
        None => Ok(peers::DEFAULT_CONNECTIONS_PER_PEER.min(max_connections)),
    }
}

/// A listening socket on `addr` (`flag` names it in errors).
fn bind(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(|| format!("preparing {flag} {addr}"))?;
    socket
        .set_reuseaddr(true)
        .with_context(|| format!("preparing {flag} {addr}"))?;
    // Before `listen`: the receive buffer sets the window scale offered in
    // the handshake, and accepted connections inherit both.
    socket
        .set_send_buffer_size(listener::SOCKET_BUFFER_BYTES)
        .with_context(|| format!("preparing {flag} {addr}"))?;
    socket
        .set_recv_buffer_size(listener::SOCKET_BUFFER_BYTES)
        .with_context(|| format!("preparing {flag} {addr}"))?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {flag} {addr}"))?;
    socket
        .listen(listener::LISTEN_BACKLOG)
        .with_context(|| format!("cannot listen on {flag} {addr}"))
}

/// Runs `serve` until SIGTERM or SIGINT, then drains and returns. If the
/// server stops on its own first (an I/O error), that error is returned.
pub async fn run(args: ServeArgs) -> Result<()> {
    // The handlers are installed before anything is bound and "Listening"
    // is logged: a SIGTERM that arrives right after start-up drains like any
    // other instead of killing the process (the default action).
    let mut signals = Signals::install();
    // In-cluster certificates may wait for the API server before anything
    // is bound: a signal then ends the wait.
    let mut running = tokio::select! {
        started = start(args) => started?,
        signal = signals.received() => {
            tracing::info!(target: LOG_TARGET, signal, "Stopped before serving");
            return Ok(());
        }
    };
    tokio::select! {
        signal = signals.received() => {
            // Not ready at once, but still serving: the API server keeps
            // calling this pod until its endpoint removal has propagated.
            running.state.set_draining();
            tracing::info!(target: LOG_TARGET, signal, delay = ?running.delay, drain = ?running.drain, "Shutting down: not ready, still serving until the delay ends, then finishing in-flight reviews");
            tokio::time::sleep(running.delay).await;
            running.shutdown().await?;
        }
        ended = &mut running.task => {
            ended.context("the server task failed")??;
            anyhow::bail!("the server stopped without being asked to");
        }
    }
    tracing::info!(target: LOG_TARGET, "Stopped");
    Ok(())
}

/// SIGTERM and SIGINT, listened for from the moment they are installed.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => {
                tracing::error!(
                    target: LOG_TARGET,
                    "Cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL"
                );
                Signals(None)
            }
        }
    }

    async fn received(&mut self) -> &'static str {
        let Some((term, int)) = &mut self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_cluster_mode_adds_the_certificate_metrics_to_the_one_registry() {
        let (m, c) = metrics(true);
        let c = c.expect("registered");
        c.renewed("serving");
        c.failed("lease");
        c.ca_expiry.set(1_900_000_000);
        c.leader.set(1);
        c.ca_bundle_writes.inc();
        let text = m.render();
        for line in [
            "persistence_webhook_certificate_renewals_total{kind=\"serving\"} 1",
            "persistence_webhook_certificate_renewals_total{kind=\"ca-switch\"} 0",
            "persistence_webhook_certificate_failures_total{step=\"lease\"} 1",
            "persistence_webhook_certificate_failures_total{step=\"ca-bundle\"} 0",
            "persistence_webhook_ca_expiry_timestamp_seconds 1900000000",
            "persistence_webhook_certificate_leader 1",
            "persistence_webhook_ca_bundle_writes_total 1",
            "persistence_webhook_certificate_expiry_timestamp_seconds 0",
            "by kind (created, serving, ca-trust, ca-switch, ca-drop, replace, stopgap;",
            "by step (secret, issue, load, ca-bundle, lease); each is retried",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn file_mode_has_no_certificate_loop_metrics() {
        let (m, c) = metrics(false);
        assert!(c.is_none());
        let text = m.render();
        assert!(!text.contains("certificate_leader"), "{text}");
        assert!(
            text.contains("persistence_webhook_certificate_expiry_timestamp_seconds 0"),
            "{text}"
        );
    }
}

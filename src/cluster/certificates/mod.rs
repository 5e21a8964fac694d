//! Certificates that look after themselves (`serve --certificates
//! in-cluster`, SPEC §9): the CA and the serving certificate live in one
//! Secret of the webhook's namespace; every replica serves the Secret's
//! current certificate and swaps it in through the server's hot-reload path;
//! the one replica holding the Lease renews them on [`schedule`]'s terms and
//! keeps the caBundle of the webhook's own MutatingWebhookConfiguration equal
//! to the Secret's.
//!
//! The rooms: [`material`] (the Secret's content and the rotation steps),
//! [`schedule`] (what is due when), [`lease`] (who writes), [`secret`] and
//! [`ca_bundle`] (the two objects written). This file holds the flags and the
//! loop that ties them together. The review path never comes here.

pub mod ca_bundle;
pub mod lease;
pub mod material;
pub mod schedule;
pub mod secret;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::sync::watch;

use crate::certs::CertRequest;
use crate::server::metrics::CertificateMetrics;
use crate::server::reload::swap_certificate;
use crate::server::tls::{self, Resolver};
use crate::server::AppState;
use ca_bundle::{Synced, WebhookConfiguration};
use lease::{Leadership, Lease, Round};
use material::{unix, Issuer, Material};
use schedule::{next_step, Step};
use secret::{Created, SecretStore, Stored};

use super::ClusterArgs;

/// Our field manager, on every object we write.
pub const FIELD_MANAGER: &str = "persistence-webhook";

/// Where `serve` takes its certificate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertificateSource {
    /// `--tls-cert` and `--tls-key`, reloaded when they change (the default).
    Files,
    /// A Secret this webhook creates, renews and rotates itself.
    InCluster,
}

/// The flags of `serve`'s in-cluster certificate mode.
#[derive(Debug, Clone, Args)]
pub struct CertificateArgs {
    /// Where the serving certificate comes from: files (--tls-cert,
    /// --tls-key), or a Secret the webhook manages itself in the cluster.
    #[arg(
        long,
        value_enum,
        value_name = "SOURCE",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATES"
    )]
    pub certificates: Option<CertificateSource>,

    /// In-cluster: the Secret holding the CA and the serving certificate.
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATE_SECRET",
        default_value = "persistence-webhook-certificates"
    )]
    pub certificate_secret: String,

    /// In-cluster: the MutatingWebhookConfiguration whose caBundle is kept
    /// in step with the Secret (every entry).
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_WEBHOOK_CONFIGURATION",
        default_value = "persistence-webhook"
    )]
    pub webhook_configuration: String,

    /// In-cluster: the Lease whose holder renews the certificates.
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_LEASE_NAME",
        default_value = "persistence-webhook-certificates"
    )]
    pub lease_name: String,

    /// In-cluster: how long the Lease holder may go without renewing before
    /// another replica takes over.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_LEASE_DURATION",
        default_value = "15s",
        value_parser = crate::cli::duration_in::<1_000, 600_000>
    )]
    pub lease_duration: humantime::Duration,

    /// In-cluster: the namespace of the Secret and the Lease (default: the
    /// pod's own, or the kubeconfig context's).
    #[arg(long, value_name = "NS", env = "PERSISTENCE_WEBHOOK_NAMESPACE")]
    pub namespace: Option<String>,

    /// In-cluster: the webhook Service's name, for the serving certificate's
    /// names (NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local).
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_SERVICE",
        default_value = "persistence-webhook"
    )]
    pub service: String,

    /// In-cluster: an extra DNS name for the serving certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub certificate_dns: Vec<String>,

    /// In-cluster: an extra IP address for the serving certificate (repeatable).
    #[arg(long, value_name = "IP")]
    pub certificate_ip: Vec<IpAddr>,

    /// In-cluster: how long a CA is valid; it is rotated at two thirds of
    /// that, with an overlap in which the caBundle trusts both.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_CA_VALIDITY",
        default_value = "5years",
        value_parser = crate::cli::human_duration
    )]
    pub ca_validity: humantime::Duration,

    /// In-cluster: how long a serving certificate is valid; it is renewed at
    /// two thirds of that.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_SERVING_VALIDITY",
        default_value = "90days",
        value_parser = crate::cli::human_duration
    )]
    pub serving_validity: humantime::Duration,

    /// In-cluster: how often every replica reads the Secret, and the Lease
    /// holder checks what is due and the webhook configuration's caBundle.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATE_CHECK_INTERVAL",
        default_value = "10s",
        value_parser = crate::cli::duration_in::<100, 3_600_000>
    )]
    pub certificate_check_interval: humantime::Duration,

    /// How to reach the API server (in-cluster mode).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl CertificateArgs {
    /// Whether `--certificates in-cluster` was asked for.
    pub fn in_cluster(&self) -> bool {
        self.certificates == Some(CertificateSource::InCluster)
    }
}

/// The checked settings.
#[derive(Debug, Clone)]
struct Settings {
    issuer: Issuer,
    check_interval: Duration,
    /// How long a change takes to reach the API server and every replica:
    /// three checks.
    settle: Duration,
}

impl Settings {
    fn new(args: &CertificateArgs, namespace: &str) -> anyhow::Result<Settings> {
        let check_interval = *args.certificate_check_interval;
        let (ca, serving) = (*args.ca_validity, *args.serving_validity);
        let settle = check_interval * 3;
        if serving < check_interval * 6 {
            anyhow::bail!(
                "--serving-validity ({}) must be at least six --certificate-check-interval ({}): it is renewed with a third of its life left, and every replica must read the new one in time",
                show(serving),
                show(check_interval)
            );
        }
        if ca < serving * 3 || ca / 3 < settle * 4 {
            anyhow::bail!(
                "--ca-validity ({}) must be at least three --serving-validity ({}) and 36 --certificate-check-interval ({}): the CA is rotated with a third of its life left, in steps of three checks each",
                show(ca),
                show(serving),
                show(check_interval)
            );
        }
        Ok(Settings {
            issuer: Issuer {
                request: CertRequest {
                    service: args.service.clone(),
                    namespace: namespace.to_owned(),
                    dns: args.certificate_dns.clone(),
                    ips: args.certificate_ip.clone(),
                    validity: serving,
                },
                ca_validity: ca,
                serving_validity: serving,
            },
            check_interval,
            settle,
        })
    }
}

/// The in-cluster certificates of one replica, ready to run.
#[derive(Debug)]
pub struct InCluster {
    settings: Settings,
    secret: SecretStore,
    webhook: WebhookConfiguration,
    lease: Lease,
    /// The first serving certificate, read before the server binds.
    pub credentials: tls::Credentials,
    first: Material,
    /// The renewal this replica made at start (created, replaced...).
    created: Option<&'static str>,
}

/// This replica's name in the Lease: the pod's name (POD_NAME, else the
/// host name, which is the pod's name in a pod) and the process id.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "persistence-webhook".into());
    format!("{host}_{}", std::process::id())
}

/// Connects, then reads the Secret (creating it if absent) until it yields
/// a certificate to serve. Retries every API failure with backoff, logging
/// each: a replica that cannot reach the API server at start has nothing to
/// serve, and says why.
pub async fn prepare(args: &CertificateArgs) -> anyhow::Result<InCluster> {
    let client = super::client(&args.cluster, Duration::from_secs(10))
        .await
        .context("--certificates in-cluster needs the API server")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let settings = Settings::new(args, &namespace)?;
    let secret = SecretStore::new(
        kube::Api::namespaced(client.clone(), &namespace),
        args.certificate_secret.clone(),
    );
    let webhook = WebhookConfiguration::new(
        kube::Api::all(client.clone()),
        args.webhook_configuration.clone(),
    );
    let lease = Lease::new(
        kube::Api::namespaced(client, &namespace),
        args.lease_name.clone(),
        identity(),
        *args.lease_duration,
    );
    let mut backoff = Backoff::new(settings.check_interval);
    loop {
        match first_material(&secret, &settings.issuer).await {
            Ok(Some((material, credentials, created))) => {
                tracing::info!(
                    namespace,
                    secret = secret.name(),
                    not_after = credentials.not_after,
                    ca_not_after = material.signer.cert.not_after,
                    "Serving the certificate of the in-cluster Secret"
                );
                return Ok(InCluster {
                    settings,
                    secret,
                    webhook,
                    lease,
                    credentials,
                    first: material,
                    created,
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(namespace, secret = secret.name(), error = %format!("{e:#}"), "Cannot read or create the certificate Secret yet; retrying");
            }
        }
        tokio::time::sleep(backoff.next()).await;
    }
}

/// The Secret's material and its serving certificate, creating the Secret
/// if absent, and the renewal that made it, if this replica made one; `None`
/// when another replica wrote it meanwhile (read again).
///
/// A Secret whose content cannot be served (unreadable, or expired while
/// the webhook was down) is fixed here too, Lease or not: no replica can be
/// serving it, and the write is conditional on the version read, so of two
/// replicas fixing it at once one wins and the other reads the winner's.
async fn first_material(
    secret: &SecretStore,
    issuer: &Issuer,
) -> anyhow::Result<Option<(Material, tls::Credentials, Option<&'static str>)>> {
    let now = SystemTime::now();
    let Some(stored) = secret.read().await.map_err(api("get", secret))? else {
        let fresh = issuer.fresh(now)?;
        return match secret.create(&fresh).await.map_err(api("create", secret))? {
            Created::Ours(_) => {
                tracing::info!(secret = secret.name(), "Created the certificate Secret");
                let credentials = serving(&fresh, now)?;
                Ok(Some((fresh, credentials, Some("created"))))
            }
            Created::Theirs => {
                tracing::info!(
                    secret = secret.name(),
                    "Another replica created the certificate Secret first; using its"
                );
                Ok(None)
            }
        };
    };
    let (fixed, kind) = match Material::from_data(&stored.data) {
        Ok(material) => match serving(&material, now) {
            Ok(credentials) => return Ok(Some((material, credentials, None))),
            Err(e) if material::unix(now) < material.signer.cert.not_after => {
                tracing::warn!(secret = secret.name(), error = %e, "The Secret's serving certificate cannot be served; issuing a new one from its CA");
                (issuer.renew_serving(&material, now)?, "serving")
            }
            Err(e) => {
                tracing::warn!(secret = secret.name(), error = %e, "The Secret's CA has expired; issuing a new CA");
                (issuer.fresh(now)?, "replace")
            }
        },
        Err(e) => {
            tracing::warn!(secret = secret.name(), error = %e, "The Secret holds no usable certificates; issuing a new CA");
            (issuer.fresh(now)?, "replace")
        }
    };
    match secret
        .replace(&fixed, &stored)
        .await
        .map_err(api("update", secret))?
    {
        Some(_) => {
            let credentials = serving(&fixed, now)?;
            Ok(Some((fixed, credentials, Some(kind))))
        }
        None => Ok(None),
    }
}

/// The serving credentials of `m`, checked at `now`.
fn serving(m: &Material, now: SystemTime) -> Result<tls::Credentials, tls::TlsError> {
    tls::load(m.serving.cert.pem.as_bytes(), m.serving.key.as_bytes(), now)
}

/// An API error on the certificate Secret, saying which verb on which
/// object, and for a refusal, what would allow it.
fn api<'a>(
    verb: &'a str,
    secret: &'a SecretStore,
) -> impl FnOnce(kube::Error) -> anyhow::Error + 'a {
    move |e| with_rbac_hint(e, &format!("{verb} the Secret {}", secret.name()))
}

/// `e` in the context of `what` (a verb and an object); a 403 names the
/// Role that grants it.
pub(crate) fn with_rbac_hint(e: kube::Error, what: &str) -> anyhow::Error {
    let forbidden = matches!(&e, kube::Error::Api(r) if r.code == 403);
    let error = anyhow::Error::new(e);
    if forbidden {
        error.context(format!(
            "cannot {what}: forbidden; the ServiceAccount needs that verb on that object (manifests/overlays/in-cluster-certificates/rbac.yaml grants it)"
        ))
    } else {
        error.context(format!("cannot {what}"))
    }
}

/// Exponential backoff from a second (or the interval, if shorter) up to
/// the check interval.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        let first = Duration::from_secs(1).min(max);
        Backoff { next: first, max }
    }

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

/// A step that failed, for the log and the `step` label.
struct Failure {
    step: &'static str,
    error: anyhow::Error,
}

fn failed(step: &'static str) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { step, error }
}

/// The running loop's memory.
struct Checker {
    settings: Settings,
    secret: SecretStore,
    webhook: WebhookConfiguration,
    leadership: Leadership,
    state: Arc<AppState>,
    resolver: Arc<Resolver>,
    metrics: CertificateMetrics,
    /// The serving certificate served now (PEM).
    served: String,
    /// The bundle last seen in place in the webhook configuration, and since
    /// when (unix seconds), while we hold the Lease.
    bundle_seen: Option<(String, i64)>,
    missing_reported: bool,
}

impl InCluster {
    /// Runs the Lease and the checks until `stop` turns true, then gives the
    /// Lease up.
    pub async fn run(
        self,
        state: Arc<AppState>,
        resolver: Arc<Resolver>,
        mut stop: watch::Receiver<bool>,
    ) {
        let InCluster {
            settings,
            secret,
            webhook,
            lease,
            credentials: _,
            first,
            created,
        } = self;
        let metrics = state.metrics.certificates.clone().unwrap_or_default();
        if let Some(kind) = created {
            metrics.renewed(kind);
        }
        metrics.ca_expiry.set(first.signer.cert.not_after);
        let leadership = lease.leadership();
        let lease_task = tokio::spawn(hold(lease, metrics.clone(), stop.clone()));
        let mut checker = Checker {
            settings,
            secret,
            webhook,
            leadership,
            state,
            resolver,
            metrics,
            served: first.serving.cert.pem,
            bundle_seen: None,
            missing_reported: false,
        };
        let mut backoff = Backoff::new(checker.settings.check_interval);
        loop {
            let wait = match checker.check().await {
                Ok(()) => {
                    backoff = Backoff::new(checker.settings.check_interval);
                    checker.settings.check_interval
                }
                Err(Failure { step, error }) => {
                    checker.metrics.failed(step);
                    let retry = backoff.next();
                    tracing::error!(step, error = %format!("{error:#}"), retry_in = ?retry, "Certificate check failed; still serving the current certificate");
                    retry
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let _ = lease_task.await;
    }
}

/// Keeps trying to hold the Lease, a few times per duration, until `stop`;
/// then releases it.
async fn hold(mut lease: Lease, metrics: CertificateMetrics, mut stop: watch::Receiver<bool>) {
    let retry = lease.duration() / 5;
    let mut held = false;
    loop {
        match lease.round().await {
            Ok(Round::Held(step)) => {
                if !held {
                    tracing::info!(
                        ?step,
                        "Holding the certificates Lease: this replica renews the certificates"
                    );
                }
                held = true;
            }
            Ok(Round::Other) => {
                if held {
                    tracing::warn!("Lost the certificates Lease to another replica");
                }
                held = false;
            }
            Err(e) => {
                metrics.failed("lease");
                let what = format!("get, create or patch (apply) the Lease {}", lease.name());
                let e = with_rbac_hint(e, &what);
                tracing::warn!(error = %format!("{e:#}"), "Cannot renew or acquire the certificates Lease; retrying");
                held = lease.leadership().held();
            }
        }
        metrics.leader.set(i64::from(lease.leadership().held()));
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Bounded: shutdown must not wait on an API server that is not there.
    match tokio::time::timeout(RELEASE_TIMEOUT, lease.release()).await {
        Ok(Ok(())) => tracing::info!("Released the certificates Lease"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Cannot release the certificates Lease; another replica takes over when it expires")
        }
        Err(_) => tracing::warn!(
            after = ?RELEASE_TIMEOUT,
            "No answer releasing the certificates Lease; another replica takes over when it expires"
        ),
    }
    metrics.leader.set(0);
}

/// The longest shutdown waits to give the Lease up.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most rotation steps taken in one check (a step writes the Secret, and a
/// new material may make another step due, e.g. a replaced CA).
const STEPS_PER_CHECK: usize = 3;

impl Checker {
    /// One check: read the Secret, serve its certificate, and if we hold the
    /// Lease, keep the caBundle in place and take the step that is due.
    async fn check(&mut self) -> Result<(), Failure> {
        let Some(stored) = self
            .secret
            .read()
            .await
            .map_err(|e| failed("secret")(api("get", &self.secret)(e)))?
        else {
            return self.recreate().await;
        };
        let mut stored = stored;
        for _ in 0..STEPS_PER_CHECK {
            let material = match Material::from_data(&stored.data) {
                Ok(m) => m,
                Err(e) if self.leadership.held() => {
                    tracing::error!(error = %e, secret = self.secret.name(), "The certificate Secret holds unusable content; replacing it with a new CA");
                    let fresh = self
                        .settings
                        .issuer
                        .fresh(SystemTime::now())
                        .map_err(|e| failed("issue")(e.into()))?;
                    match self.write(&fresh, stored, "replace").await? {
                        Some(next) => {
                            stored = next;
                            continue;
                        }
                        None => return Ok(()),
                    }
                }
                Err(e) => return Err(failed("load")(e.into())),
            };
            self.serve(&material)?;
            if !self.leadership.held() {
                self.bundle_seen = None;
                return Ok(());
            }
            self.sync_bundle(&material).await?;
            let now = unix(SystemTime::now());
            let seen = self.bundle_seen.as_ref().map(|(_, t)| *t);
            let step = next_step(&material, now, seen, secs(self.settings.settle));
            let next = match self.issue(step, &material) {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(e) => return Err(failed("issue")(e.into())),
            };
            match self.write(&next, stored, step.kind()).await? {
                Some(written) => stored = written,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// The material after `step`, or `None` when nothing is due.
    fn issue(&self, step: Step, m: &Material) -> Result<Option<Material>, material::IssueError> {
        let (issuer, now) = (&self.settings.issuer, SystemTime::now());
        Ok(Some(match step {
            Step::Wait => return Ok(None),
            Step::RenewServing => issuer.renew_serving(m, now)?,
            Step::TrustNextCa => issuer.trust_next(m, now)?,
            Step::SwitchToNextCa => issuer.switch(m, now)?,
            Step::DropPreviousCa => m.drop_previous(),
            Step::Replace => issuer.fresh(now)?,
        }))
    }

    /// Replaces the Secret's content, counting and logging the renewal;
    /// `None` when another writer changed it first (read again next check).
    async fn write(
        &mut self,
        next: &Material,
        stored: Stored,
        kind: &'static str,
    ) -> Result<Option<Stored>, Failure> {
        let written = self
            .secret
            .replace(next, &stored)
            .await
            .map_err(|e| failed("secret")(api("update", &self.secret)(e)))?;
        match &written {
            Some(_) => {
                self.metrics.renewed(kind);
                tracing::info!(
                    kind,
                    secret = self.secret.name(),
                    serving_not_after = next.serving.cert.not_after,
                    ca_not_after = next.signer.cert.not_after,
                    "Renewed the certificates"
                );
            }
            None => tracing::warn!(
                kind,
                "The certificate Secret changed under us; reading it again"
            ),
        }
        Ok(written)
    }

    /// The Secret was deleted while we run: the Lease holder makes a new
    /// one (a new CA: the old key went with the Secret).
    async fn recreate(&mut self) -> Result<(), Failure> {
        if !self.leadership.held() {
            return Err(failed("secret")(anyhow::anyhow!(
                "the Secret {} does not exist; the Lease holder recreates it",
                self.secret.name()
            )));
        }
        let fresh = self
            .settings
            .issuer
            .fresh(SystemTime::now())
            .map_err(|e| failed("issue")(e.into()))?;
        match self
            .secret
            .create(&fresh)
            .await
            .map_err(|e| failed("secret")(api("create", &self.secret)(e)))?
        {
            Created::Ours(_) => {
                self.metrics.renewed("created");
                tracing::warn!(
                    secret = self.secret.name(),
                    "The certificate Secret was gone; created a new one with a new CA"
                );
            }
            Created::Theirs => {}
        }
        Ok(())
    }

    /// Serves the Secret's certificate if it is not the one served already.
    fn serve(&mut self, m: &Material) -> Result<(), Failure> {
        self.metrics.ca_expiry.set(m.signer.cert.not_after);
        if m.serving.cert.pem == self.served {
            return Ok(());
        }
        let creds = tls::load(
            m.serving.cert.pem.as_bytes(),
            m.serving.key.as_bytes(),
            SystemTime::now(),
        )
        .map_err(|e| {
            self.state
                .metrics
                .reload(crate::server::metrics::Reloaded::Certificate, false);
            failed("load")(anyhow::Error::new(e).context(format!(
                "the serving certificate of the Secret {}",
                self.secret.name()
            )))
        })?;
        let not_after = creds.not_after;
        swap_certificate(&self.state, &self.resolver, creds);
        self.served = m.serving.cert.pem.clone();
        tracing::info!(
            secret = self.secret.name(),
            not_after,
            "Reloaded the serving certificate from the Secret"
        );
        Ok(())
    }

    /// Puts the Secret's bundle into every entry of the webhook
    /// configuration if any differs, and notes since when it is in place.
    async fn sync_bundle(&mut self, m: &Material) -> Result<(), Failure> {
        let bundle = m.bundle();
        let synced = self.webhook.sync(&bundle).await.map_err(|e| {
            let what = format!(
                "get or patch (apply) the MutatingWebhookConfiguration {}",
                self.webhook.name()
            );
            failed("ca-bundle")(with_rbac_hint(e, &what))
        })?;
        let now = unix(SystemTime::now());
        match &synced {
            Synced::InPlace => {}
            Synced::Written(entries) => {
                self.metrics.ca_bundle_writes.inc();
                tracing::info!(
                    configuration = self.webhook.name(),
                    ?entries,
                    "Wrote the caBundle into the webhook configuration"
                );
                // Written now: in place from now on, whatever was seen before.
                self.bundle_seen = Some((bundle, now));
                self.missing_reported = false;
                return Ok(());
            }
            Synced::Missing => {
                if !self.missing_reported {
                    tracing::warn!(
                        configuration = self.webhook.name(),
                        "The MutatingWebhookConfiguration does not exist; its caBundle is written once it does"
                    );
                }
                self.missing_reported = true;
                self.bundle_seen = None;
                return Ok(());
            }
        }
        if self.bundle_seen.as_ref().is_none_or(|(b, _)| *b != bundle) {
            self.bundle_seen = Some((bundle, now));
        }
        Ok(())
    }
}

/// A duration as it was probably written: whole days as days (humantime
/// would say "2months 29days 2h 52m 48s" for 90 days), else humantime's form.
fn show(d: Duration) -> String {
    const DAY: u64 = 86400;
    if d.as_secs() >= DAY && d.as_secs() % DAY == 0 && d.subsec_nanos() == 0 {
        format!("{}days", d.as_secs() / DAY)
    } else {
        humantime::format_duration(d).to_string()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(flags: &[&str]) -> Result<CertificateArgs, String> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            c: CertificateArgs,
        }
        let argv = std::iter::once("x").chain(flags.iter().copied());
        Cli::try_parse_from(argv)
            .map(|c| c.c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn lifetimes_that_leave_no_time_to_rotate_are_refused() {
        let ok = args(&["--certificates", "in-cluster"]).expect("defaults");
        let s = Settings::new(&ok, "ns").expect("the defaults are sane");
        assert_eq!(s.settle, Duration::from_secs(30));
        assert!(ok.in_cluster());
        let cases = [
            (
                vec!["--serving-validity", "50s"],
                "--serving-validity (50s) must be at least six --certificate-check-interval (10s)",
            ),
            (
                vec!["--ca-validity", "100days"],
                "--ca-validity (100days) must be at least three --serving-validity (90days)",
            ),
            (
                vec![
                    "--certificate-check-interval",
                    "1s",
                    "--serving-validity",
                    "10s",
                    "--ca-validity",
                    "30s",
                ],
                "and 36 --certificate-check-interval (1s)",
            ),
        ];
        for (flags, want) in cases {
            let a = args(&flags).expect("parses");
            let err = Settings::new(&a, "ns").expect_err(want).to_string();
            assert!(err.contains(want), "{flags:?}: {err}");
        }
        let short = args(&[
            "--certificate-check-interval",
            "1s",
            "--serving-validity",
            "30s",
            "--ca-validity",
            "2m",
        ])
        .expect("parses");
        Settings::new(&short, "ns").expect("test lifetimes are accepted");
    }

    #[test]
    fn a_refusal_names_the_verb_the_object_and_the_rbac() {
        let error = |code| {
            kube::Error::Api(kube::error::ErrorResponse {
                status: "Failure".into(),
                message: "no".into(),
                reason: "Forbidden".into(),
                code,
            })
        };
        let forbidden = format!("{:#}", with_rbac_hint(error(403), "get the Secret s"));
        assert!(
            forbidden.starts_with("cannot get the Secret s: forbidden;"),
            "{forbidden}"
        );
        assert!(forbidden.contains("rbac.yaml"), "{forbidden}");
        let other = format!("{:#}", with_rbac_hint(error(500), "get the Secret s"));
        assert!(other.starts_with("cannot get the Secret s: "), "{other}");
        assert!(!other.contains("rbac"), "{other}");
    }

    #[test]
    fn in_cluster_mode_needs_no_certificate_files() {
        use crate::cli::{Cli, Command};
        let parse = |extra: &[&str]| {
            let argv = ["persistence-webhook", "serve", "--config", "c.yaml"];
            Cli::try_parse_from(argv.iter().chain(extra))
        };
        let err = parse(&[]).expect_err("files by default").to_string();
        assert!(err.contains("--tls-cert"), "{err}");
        let cli = parse(&["--certificates", "in-cluster"]).expect("no files needed");
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert!(serve.certificates.in_cluster());
        assert_eq!(
            serve.certificates.certificate_secret,
            "persistence-webhook-certificates"
        );
        let files = parse(&[
            "--certificates",
            "files",
            "--tls-cert",
            "a",
            "--tls-key",
            "b",
        ])
        .expect("files named");
        let Command::Serve(serve) = files.command else {
            panic!("not serve")
        };
        assert!(!serve.certificates.in_cluster());
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let got: Vec<u64> = (0..6).map(|_| b.next().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
    }
}

//! Certificates that look after themselves (`serve --certificates
//! in-cluster`, SPEC §9): the CA and the serving certificate live in one
//! Secret of the webhook's namespace; every replica serves the Secret's
//! current certificate and swaps it in through the server's hot-reload path;
//! the one replica holding the Lease renews them on [`schedule`]'s terms and
//! keeps the caBundle of the webhook's own MutatingWebhookConfiguration equal
//! to the Secret's.
//!
//! The rooms: [`args`] (the flags and the checked settings), [`material`]
//! (the Secret's content and the rotation steps), [`schedule`] (what is due
//! when), [`lease`] (who writes), [`secret`] and [`ca_bundle`] (the two
//! objects written), `turn` (one turn of the loop), [`metrics`] (what the
//! loop counts). This file starts it all: the first read before the server
//! binds, then the Lease and check loops beside the server, which hand new
//! certificates to the server through a [`Serving`] handle. The check loop
//! turns every check interval, at once when this replica gains the Lease,
//! and a second before the served certificate ends. The review path never
//! comes here.

pub mod args;
pub mod ca_bundle;
pub mod lease;
pub mod material;
pub mod metrics;
pub mod schedule;
pub mod secret;
mod turn;

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::certs::credentials::{self, Credentials, TlsError};
use args::Settings;
pub use args::{CertificateArgs, CertificateSource};
use ca_bundle::WebhookConfiguration;
use lease::{Lease, Round};
use material::{Issuer, Material};
pub use metrics::CertificateMetrics;
use secret::{Created, SecretStore};
use turn::{Failure, Keeper};

/// Our field manager, on every object we write.
pub const FIELD_MANAGER: &str = "persistence-webhook";

/// Create and replace parameters naming [`FIELD_MANAGER`].
fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..kube::api::PostParams::default()
    }
}

/// What the loop needs of the server that serves its certificate: a handle
/// to swap it, nothing else of the server. `serve` implements it with the
/// server's TLS resolver and reload metrics.
pub trait Serving: Send + Sync + 'static {
    /// Serves `credentials` from the next handshake on, and sets the
    /// served certificate's expiry (a certificate reload that took).
    fn swap(&self, credentials: Credentials);
    /// Says that a certificate of the Secret could not be served (a
    /// certificate reload refused; the current one keeps serving).
    fn refused(&self);
}

/// The in-cluster certificates of one replica, ready to run.
#[derive(Debug)]
pub struct InCluster {
    settings: Settings,
    secret: SecretStore,
    webhook: WebhookConfiguration,
    lease: Lease,
    /// The first serving certificate, read before the server binds.
    pub credentials: Credentials,
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
    args.check_lifetimes()?;
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
) -> anyhow::Result<Option<(Material, Credentials, Option<&'static str>)>> {
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
            Err(e) if material::unix_ms(now) < material.signer.cert.not_after_ms() => {
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
fn serving(m: &Material, now: SystemTime) -> Result<Credentials, TlsError> {
    credentials::load(m.serving.cert.pem.as_bytes(), m.serving.key.as_bytes(), now)
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

impl InCluster {
    /// Runs the Lease and the checks until `stop` turns true, then gives the
    /// Lease up. New certificates go to `serving`; the loop counts into
    /// `metrics`.
    pub async fn run(
        self,
        serving: impl Serving,
        metrics: CertificateMetrics,
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
        if let Some(kind) = created {
            metrics.renewed(kind);
        }
        metrics.ca_expiry.set(first.signer.cert.not_after);
        let leadership = lease.leadership();
        let lease_task = tokio::spawn(hold(lease, metrics.clone(), stop.clone()));
        let mut keeper = Keeper {
            settings,
            secret,
            webhook,
            leadership: leadership.clone(),
            serving: Box::new(serving),
            metrics,
            served: first.serving.cert.pem.clone(),
            served_not_after: first.serving.cert.not_after,
            last: first,
            signer_expiry_reported: false,
            bundle_seen: None,
            missing_reported: false,
        };
        let mut backoff = Backoff::new(keeper.settings.check_interval);
        loop {
            // Near the served certificate's end a turn is bounded: the
            // stopgap below must come before the end, API server or not.
            let outcome = if keeper.expiring() {
                tokio::time::timeout(turn::WAKE / 2, keeper.turn())
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure {
                            step: "secret",
                            error: anyhow::anyhow!(
                                "no answer from the API server within {:?}, with the served certificate about to end",
                                turn::WAKE / 2
                            ),
                        })
                    })
            } else {
                keeper.turn().await
            };
            let wait = match outcome {
                Ok(()) => {
                    backoff = Backoff::new(keeper.settings.check_interval);
                    keeper.settings.check_interval
                }
                Err(Failure { step, error }) => {
                    keeper.metrics.failed(step);
                    let retry = backoff.next();
                    tracing::error!(step, error = %format!("{error:#}"), retry_in = ?retry, "Certificate check failed; still serving the current certificate");
                    retry
                }
            };
            keeper.keep_valid();
            let wait = keeper.expiry_wake().map_or(wait, |w| w.min(wait));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = leadership.gained() => {
                    tracing::info!("Gained the certificates Lease: checking at once");
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_verb_the_object_and_the_rbac() {
        let error = |code| {
            kube::Error::Api(
                kube::core::Status::failure("no", "Forbidden")
                    .with_code(code)
                    .boxed(),
            )
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
    fn backoff_doubles_up_to_the_interval() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let got: Vec<u64> = (0..6).map(|_| b.next().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
    }
}

//! One check of the in-cluster certificates, every check interval: read the
//! Secret and serve its certificate; and on the Lease holder, keep the
//! caBundle in place and take the rotation step that is due.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::args::Settings;
use super::ca_bundle::{Synced, WebhookConfiguration};
use super::lease::Leadership;
use super::material::{self, unix, Material};
use super::schedule::{next_step, Step};
use super::secret::{Created, SecretStore, Stored};
use super::{api, serving, with_rbac_hint};
use crate::server::metrics::CertificateMetrics;
use crate::server::reload::swap_certificate;
use crate::server::tls::Resolver;
use crate::server::AppState;

/// A step that failed, for the log and the `step` label.
pub(super) struct Failure {
    pub(super) step: &'static str,
    pub(super) error: anyhow::Error,
}

fn failed(step: &'static str) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { step, error }
}

/// The running loop's memory.
pub(super) struct Checker {
    pub(super) settings: Settings,
    pub(super) secret: SecretStore,
    pub(super) webhook: WebhookConfiguration,
    pub(super) leadership: Leadership,
    pub(super) state: Arc<AppState>,
    pub(super) resolver: Arc<Resolver>,
    pub(super) metrics: CertificateMetrics,
    /// The serving certificate served now (PEM).
    pub(super) served: String,
    /// The bundle last seen in place in the webhook configuration, and since
    /// when (unix seconds), while we hold the Lease.
    pub(super) bundle_seen: Option<(String, i64)>,
    /// A missing webhook configuration was logged (once until it appears).
    pub(super) missing_reported: bool,
}

/// Most rotation steps taken in one check (a step writes the Secret, and a
/// new material may make another step due, e.g. a replaced CA).
const STEPS_PER_CHECK: usize = 3;

impl Checker {
    /// One check: read the Secret, serve its certificate, and if we hold the
    /// Lease, keep the caBundle in place and take the step that is due.
    pub(super) async fn check(&mut self) -> Result<(), Failure> {
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
            let served = self.serve(&material);
            if !self.leadership.held() {
                self.bundle_seen = None;
                return served;
            }
            if let Err(Failure { step, error }) = served {
                // An expired serving certificate is exactly what the step
                // below renews: the holder goes on rather than stop here.
                self.metrics.failed(step);
                tracing::warn!(step, error = %format!("{error:#}"), "Cannot serve the Secret's certificate; renewing");
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
        let creds = serving(m, SystemTime::now()).map_err(|e| {
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

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

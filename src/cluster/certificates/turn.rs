//! One turn of the in-cluster certificate loop, every check interval: read
//! the Secret and serve its certificate; and on the Lease holder, keep the
//! caBundle in place and take the rotation step that is due.
//!
//! A replica never keeps serving a certificate it can see expire: the loop
//! wakes [`WAKE`] before the served certificate's notAfter and reads the
//! Secret (a fresher certificate is swapped in at once); if the Secret holds
//! none (the holder died and no other has taken over yet, or the API server
//! is slow or away), the replica serves a stopgap of its own, issued from
//! the Secret's signer as last read (trusted: the signer is always in the
//! caBundle). The stopgap is never written: the Secret stays the Lease
//! holder's, and the holder's next certificate replaces it. With a signer
//! that has expired too nothing this replica could issue would be trusted;
//! it says so and waits for the holder to replace the CA.

use std::time::{Duration, SystemTime};

use super::args::Settings;
use super::ca_bundle::{Synced, WebhookConfiguration};
use super::lease::Leadership;
use super::material::{self, unix_ms, Material};
use super::schedule::{next_step, Step};
use super::secret::{Created, SecretStore, Stored};
use super::{api, serving, with_rbac_hint, CertificateMetrics, Serving};

/// A step that failed, for the log and the `step` label.
pub(super) struct Failure {
    pub(super) step: &'static str,
    pub(super) error: anyhow::Error,
}

fn failed(step: &'static str) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { step, error }
}

/// The running loop's memory, from one turn to the next.
pub(super) struct Keeper {
    pub(super) settings: Settings,
    pub(super) secret: SecretStore,
    pub(super) webhook: WebhookConfiguration,
    pub(super) leadership: Leadership,
    /// The server's handle: where a new certificate goes.
    pub(super) serving: Box<dyn Serving>,
    pub(super) metrics: CertificateMetrics,
    /// The serving certificate served now (PEM).
    pub(super) served: String,
    /// Its notAfter (unix seconds).
    pub(super) served_not_after: i64,
    /// The Secret's content as last read: the signer of a stopgap.
    pub(super) last: Material,
    /// An expired signer was logged (once until it changes).
    pub(super) signer_expiry_reported: bool,
    /// The bundle last seen in place in the webhook configuration, and since
    /// when (unix milliseconds), while we hold the Lease.
    pub(super) bundle_seen: Option<(String, i64)>,
    /// A missing webhook configuration was logged (once until it appears).
    pub(super) missing_reported: bool,
}

/// How long before the served certificate's notAfter a replica reads the
/// Secret again, and serves a stopgap if it holds nothing fresher. Under the
/// flags' rules the Lease holder's renewal reaches every replica at least
/// the rules' slack (1 s) before the end, so this is a last resort.
pub(super) const WAKE: Duration = Duration::from_secs(1);

/// What a replica does about the certificate it serves, at `now` (unix
/// ms), given the Secret's content as last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// It ends later than [`WAKE`] from now: nothing.
    Fresh,
    /// It ends within [`WAKE`] and the Secret has nothing fresher: a
    /// stopgap from the Secret's signer.
    Stopgap,
    /// The same, but the signer ends within [`WAKE`] too: nothing this
    /// replica issues would be trusted.
    SignerExpiring,
}

/// Whether the certificate ending at `served_not_after` (unix seconds) must
/// be replaced by a stopgap at `now` (unix ms). Pure.
pub(super) fn expiry(served_not_after: i64, last: &Material, now: i64) -> Expiry {
    let wake = i64::try_from(WAKE.as_millis()).unwrap_or(i64::MAX);
    let ending = |not_after_ms: i64| now >= not_after_ms.saturating_sub(wake);
    if !ending(material::ms(served_not_after)) {
        Expiry::Fresh
    } else if !ending(last.serving.cert.not_after_ms()) {
        // The Secret's is fresher: the next read swaps it in.
        Expiry::Fresh
    } else if ending(last.signer.cert.not_after_ms()) {
        Expiry::SignerExpiring
    } else {
        Expiry::Stopgap
    }
}

/// Most rotation steps taken in one check (a step writes the Secret, and a
/// new material may make another step due, e.g. a replaced CA).
const STEPS_PER_CHECK: usize = 3;

impl Keeper {
    /// One turn: read the Secret, serve its certificate, and if we hold the
    /// Lease, keep the caBundle in place and take the step that is due.
    pub(super) async fn turn(&mut self) -> Result<(), Failure> {
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
            let now = unix_ms(SystemTime::now());
            let seen = self.bundle_seen.as_ref().map(|(_, t)| *t);
            let step = next_step(&material, now, seen, self.settings.settle);
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

    /// Serves the Secret's certificate if it is not the one served already
    /// (and not one that ends within [`WAKE`] while ours ends later: a
    /// stopgap outlives an expiring Secret).
    fn serve(&mut self, m: &Material) -> Result<(), Failure> {
        self.metrics.ca_expiry.set(m.signer.cert.not_after);
        self.last = m.clone();
        if m.serving.cert.pem == self.served {
            return Ok(());
        }
        let now = unix_ms(SystemTime::now());
        let wake = i64::try_from(WAKE.as_millis()).unwrap_or(i64::MAX);
        if now >= m.serving.cert.not_after_ms().saturating_sub(wake)
            && self.served_not_after > m.serving.cert.not_after
        {
            return Ok(());
        }
        let creds = serving(m, SystemTime::now()).map_err(|e| {
            self.serving.refused();
            failed("load")(anyhow::Error::new(e).context(format!(
                "the serving certificate of the Secret {}",
                self.secret.name()
            )))
        })?;
        let not_after = creds.not_after;
        self.serving.swap(creds);
        self.served = m.serving.cert.pem.clone();
        self.served_not_after = m.serving.cert.not_after;
        tracing::info!(
            secret = self.secret.name(),
            not_after,
            "Reloaded the serving certificate from the Secret"
        );
        Ok(())
    }

    /// When the loop must wake to look at the served certificate again
    /// ([`WAKE`] before its notAfter), if that is still ahead.
    pub(super) fn expiry_wake(&self) -> Option<Duration> {
        let at = material::ms(self.served_not_after)
            .saturating_sub(i64::try_from(WAKE.as_millis()).unwrap_or(i64::MAX));
        let left = at.saturating_sub(unix_ms(SystemTime::now()));
        u64::try_from(left)
            .ok()
            .filter(|l| *l > 0)
            .map(Duration::from_millis)
    }

    /// Whether the served certificate ends within [`WAKE`] and has not
    /// ended yet: a turn then is bounded, so that a stopgap can still come
    /// in time. (Once it has ended no stopgap was possible: the turns that
    /// may replace the CA are not cut short.)
    pub(super) fn expiring(&self) -> bool {
        let now = unix_ms(SystemTime::now());
        self.expiry_wake().is_none() && now < material::ms(self.served_not_after)
    }

    /// After a turn: a stopgap if the served certificate ends within
    /// [`WAKE`] and the Secret, as last read, has nothing fresher.
    pub(super) fn keep_valid(&mut self) {
        let now = SystemTime::now();
        match expiry(self.served_not_after, &self.last, unix_ms(now)) {
            Expiry::Fresh => {}
            Expiry::SignerExpiring => {
                if !self.signer_expiry_reported {
                    tracing::error!(
                        not_after = self.served_not_after,
                        ca_not_after = self.last.signer.cert.not_after,
                        "The serving certificate expires and so does its CA: nothing this replica can issue would be trusted; the Lease holder replaces the CA"
                    );
                }
                self.signer_expiry_reported = true;
            }
            Expiry::Stopgap => {
                self.signer_expiry_reported = false;
                let issued = self
                    .settings
                    .issuer
                    .renew_serving(&self.last, now)
                    .map_err(anyhow::Error::new)
                    .and_then(|m| Ok((serving(&m, now)?, m.serving.cert)));
                match issued {
                    Ok((creds, cert)) => {
                        self.serving.swap(creds);
                        self.metrics.renewed("stopgap");
                        tracing::warn!(
                            secret = self.secret.name(),
                            expiring = self.served_not_after,
                            not_after = cert.not_after,
                            "The Secret holds no fresher serving certificate: serving one of this replica's own, from the Secret's CA, until the Lease holder renews it"
                        );
                        self.served = cert.pem;
                        self.served_not_after = cert.not_after;
                    }
                    Err(error) => {
                        self.metrics.failed("issue");
                        tracing::error!(error = %format!("{error:#}"), "Cannot issue a stopgap serving certificate");
                    }
                }
            }
        }
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
        let now = unix_ms(SystemTime::now());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::certificates::material::{Dated, Keyed, Rotation};

    fn keyed(not_before: i64, not_after: i64) -> Keyed {
        Keyed {
            cert: Dated {
                pem: format!("{not_before}-{not_after}"),
                not_before,
                not_after,
            },
            key: String::new(),
        }
    }

    /// What a replica does as its certificate (ending at 100 s) nears its
    /// end, by what the Secret held at its last read.
    #[test]
    fn a_replica_replaces_a_certificate_it_sees_expire() {
        let secret = |serving: (i64, i64), signer: (i64, i64)| Material {
            serving: keyed(serving.0, serving.1),
            signer: keyed(signer.0, signer.1),
            rotation: Rotation::Steady,
        };
        let same = secret((74, 100), (0, 1000));
        let fresher = secret((90, 116), (0, 1000));
        let signer_ending = secret((74, 100), (0, 100));
        let cases = [
            (&same, 98_999, Expiry::Fresh, "more than a second left"),
            (
                &same,
                99_000,
                Expiry::Stopgap,
                "a second left, nothing fresher",
            ),
            (&same, 100_500, Expiry::Stopgap, "expired, nothing fresher"),
            (
                &fresher,
                99_500,
                Expiry::Fresh,
                "the Secret's is swapped in",
            ),
            (
                &signer_ending,
                99_500,
                Expiry::SignerExpiring,
                "the CA ends too",
            ),
        ];
        for (last, now, want, why) in cases {
            assert_eq!(expiry(100, last, now), want, "{why}");
        }
    }
}

//! The `coordination.k8s.io` Lease that makes one replica the writer of the
//! certificates: created if absent (a 409 means another replica was first),
//! then renewed or taken over by server-side apply with the Lease's
//! `resourceVersion` as a precondition, so two replicas can never both win
//! the same round.
//!
//! A holder counts itself the holder only until two thirds of the Lease
//! duration after the start of its last successful renewal: a holder cut off
//! from the API server stops writing before anyone else may take over. Expiry
//! of another's Lease is judged the way client-go judges it, on this
//! process's own clock: the record (holder, renewTime) unchanged for a whole
//! Lease duration since this process first saw it, whatever the clocks of the
//! other replicas say.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use super::{post_params, FIELD_MANAGER};

/// Whether this replica holds the Lease now; cheap to clone and to ask.
/// Gaining it is signalled, so that a new holder acts at once rather than
/// at its next check: a takeover already spent most of the time a renewal
/// had left.
#[derive(Debug, Clone, Default)]
pub struct Leadership {
    until: Arc<Mutex<Option<Instant>>>,
    gained: Arc<tokio::sync::Notify>,
}

impl Leadership {
    /// True until the renewal deadline of the last successful renewal.
    pub fn held(&self) -> bool {
        self.until().is_some_and(|t| Instant::now() < t)
    }

    /// Completes once this replica gains the Lease after not holding it
    /// (at once if that happened since the last call).
    pub async fn gained(&self) {
        self.gained.notified().await;
    }

    fn until(&self) -> Option<Instant> {
        *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, until: Option<Instant>) {
        let was = self.held();
        *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
        if !was && self.held() {
            // One stored permit: a check running now is followed by another.
            self.gained.notify_one();
        }
    }
}

/// A Lease record as last seen, and when this process first saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The holder and renewTime, as one comparable string.
    pub record: String,
    /// When this process first saw that record.
    pub at: Instant,
}

/// What to do with the Lease as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// It does not exist: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It is free, or its holder has not renewed it for a whole duration.
    Acquire,
    /// Another replica holds it.
    Wait,
}

/// Decides the move for a Lease held by `holder` (`None`: absent Lease,
/// `Some("")`: free) with record `record`, given what was observed before;
/// returns the move and the observation to keep.
pub fn decide(
    found: Option<(&str, &str)>,
    me: &str,
    before: Option<&Observed>,
    now: Instant,
    duration: Duration,
) -> (Move, Option<Observed>) {
    let Some((holder, record)) = found else {
        return (Move::Create, None);
    };
    let observed = match before {
        Some(o) if o.record == record => o.clone(),
        _ => Observed {
            record: record.to_owned(),
            at: now,
        },
    };
    let step = if holder == me {
        Move::Renew
    } else if holder.is_empty() || now.duration_since(observed.at) >= duration {
        Move::Acquire
    } else {
        Move::Wait
    };
    (step, Some(observed))
}

/// This replica's side of the Lease.
#[derive(Debug)]
pub struct Lease {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<Observed>,
    leadership: Leadership,
}

/// The outcome of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// We hold it (renewed, acquired or created).
    Held(Move),
    /// Another replica holds it, or won the race this round.
    Other,
}

impl Lease {
    /// The Lease `name` in `api`'s namespace, for `identity`.
    pub fn new(api: Api<LeaseObject>, name: String, identity: String, duration: Duration) -> Lease {
        Lease {
            api,
            name,
            identity,
            duration,
            observed: None,
            leadership: Leadership::default(),
        }
    }

    /// Shared view of whether we hold it.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a holder may go without renewing.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// One round: read the Lease, then create, renew or take it over as
    /// [`decide`] says. An API error leaves the leadership to run out at its
    /// deadline.
    pub async fn round(&mut self) -> Result<Round, kube::Error> {
        let started = Instant::now();
        let current = self.api.get_opt(&self.name).await?;
        let found = current.as_ref().map(|lease| {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_default();
            let renewed = serde_json::to_string(&spec.renew_time).unwrap_or_default();
            (holder.clone(), format!("{holder}@{renewed}"))
        });
        let (step, observed) = decide(
            found.as_ref().map(|(h, r)| (h.as_str(), r.as_str())),
            &self.identity,
            self.observed.as_ref(),
            started,
            self.duration,
        );
        self.observed = observed;
        let result = match (step, &current) {
            (Move::Create, _) => {
                let body: LeaseObject = serde_json::from_value(self.body(Move::Create, None))
                    .map_err(kube::Error::SerdeError)?;
                self.api.create(&post_params(), &body).await.map(|_| ())
            }
            (Move::Renew | Move::Acquire, Some(lease)) => {
                let body = self.body(step, Some(lease));
                let pp = PatchParams::apply(FIELD_MANAGER).force();
                self.api
                    .patch(&self.name, &pp, &Patch::Apply(body))
                    .await
                    .map(|_| ())
            }
            _ => {
                if found.as_ref().is_some_and(|(h, _)| *h != self.identity) {
                    self.leadership.set(None);
                }
                return Ok(Round::Other);
            }
        };
        match result {
            Ok(()) => {
                self.leadership.set(Some(started + self.duration * 2 / 3));
                Ok(Round::Held(step))
            }
            // Another replica created or changed it first.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Other),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it, so another replica takes over at
    /// once rather than after a whole duration.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        if !self.leadership.held() {
            return Ok(());
        }
        self.leadership.set(None);
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        if holder.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let body = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&self.name, &pp, &Patch::Apply(body))
            .await
            .map(|_| ())
    }

    fn body(&self, step: Move, current: Option<&LeaseObject>) -> serde_json::Value {
        let now = micro_time(SystemTime::now());
        let spec = current.and_then(|l| l.spec.clone()).unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquired, transitions) = match step {
            Move::Renew => (
                serde_json::to_value(&spec.acquire_time).unwrap_or_default(),
                transitions,
            ),
            _ => (json!(now), transitions.saturating_add(1)),
        };
        let seconds = i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let mut body = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": seconds,
                "acquireTime": acquired,
                "renewTime": now,
                "leaseTransitions": if step == Move::Create { 0 } else { transitions },
            },
        });
        if let Some(rv) = current.and_then(|l| l.metadata.resource_version.clone()) {
            // The precondition: a change since our read makes this a 409.
            body["metadata"]["resourceVersion"] = json!(rv);
        }
        body
    }
}

/// `2026-12-01T16:00:00.123456Z`: the MicroTime form the API server parses.
fn micro_time(t: SystemTime) -> String {
    let at = time::OffsetDateTime::from(t);
    let seconds = crate::certs::rfc3339(at);
    format!("{}.{:06}Z", seconds.trim_end_matches('Z'), at.microsecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_follow_the_record_and_the_local_clock() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let seen = |record: &str, at: Instant| Observed {
            record: record.into(),
            at,
        };
        let other = Some(("b", "b@1"));
        let cases = [
            (None, None, t0, Move::Create, "absent"),
            (Some(("a", "a@1")), None, t0, Move::Renew, "ours"),
            (Some(("", "@")), None, t0, Move::Acquire, "free"),
            (other, None, t0, Move::Wait, "first sight of another's"),
            (
                other,
                Some(seen("b@1", t0)),
                t0 + d - Duration::from_millis(1),
                Move::Wait,
                "unchanged, under a duration",
            ),
            (
                other,
                Some(seen("b@1", t0)),
                t0 + d,
                Move::Acquire,
                "unchanged for a duration",
            ),
            (
                other,
                Some(seen("b@0", t0)),
                t0 + d * 10,
                Move::Wait,
                "renewed since: seen anew",
            ),
        ];
        for (found, before, now, want, why) in cases {
            let (got, kept) = decide(found, "a", before.as_ref(), now, d);
            assert_eq!(got, want, "{why}");
            match (found, &kept) {
                (None, None) => {}
                (Some((_, record)), Some(o)) => {
                    assert_eq!(o.record, record, "{why}");
                    let same = before.as_ref().is_some_and(|b| b.record == record);
                    assert_eq!(o.at, if same { t0 } else { now }, "{why}");
                }
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn gaining_the_lease_wakes_the_checks_once() {
        let l = Leadership::default();
        let woken = || async {
            tokio::time::timeout(Duration::from_millis(50), l.gained())
                .await
                .is_ok()
        };
        assert!(!woken().await, "not held: no signal");
        l.set(Some(Instant::now() + Duration::from_secs(10)));
        assert!(l.held());
        assert!(woken().await, "gained: the check runs at once");
        l.set(Some(Instant::now() + Duration::from_secs(10)));
        assert!(!woken().await, "a renewal is no gain");
        l.set(None);
        l.set(Some(Instant::now() + Duration::from_secs(10)));
        assert!(woken().await, "gained again");
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_435_200_000_042);
        assert_eq!(micro_time(t), "2026-11-23T12:00:00.000042Z");
    }
}

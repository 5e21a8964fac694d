//! When to renew what: the one decision the Lease holder takes on every
//! check, from the Secret's content and the time. Pure: no I/O, no clock.
//!
//! - The serving certificate is renewed at two thirds of its life.
//! - The CA is renewed at two thirds of its life, in three steps: the new CA
//!   is trusted beside the old one; once the caBundle holding both has been
//!   in place for the settle time, the new CA signs the serving certificate;
//!   once every replica has had the settle time to load it, the old CA goes.
//! - A signer past its end is replaced at once: nothing it signed is trusted
//!   any more, so there is nothing left to overlap with.

use super::material::{Material, Rotation};

/// What the Lease holder does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing is due.
    Wait,
    /// A new serving certificate from the current signer.
    RenewServing,
    /// Rotation phase 1: a new CA, trusted beside the signer.
    TrustNextCa,
    /// Rotation phase 2: the new CA signs a new serving certificate.
    SwitchToNextCa,
    /// Rotation phase 3: the old CA is no longer trusted.
    DropPreviousCa,
    /// A new CA and serving certificate at once: the signer has expired.
    Replace,
}

impl Step {
    /// The metric label of the renewal it makes.
    pub fn kind(self) -> &'static str {
        match self {
            Step::Wait => "none",
            Step::RenewServing => "serving",
            Step::TrustNextCa => "ca-trust",
            Step::SwitchToNextCa => "ca-switch",
            Step::DropPreviousCa => "ca-drop",
            Step::Replace => "replace",
        }
    }
}

/// What is due at `now` (unix seconds). `bundle_in_place_since` is when this
/// Lease holder first saw the webhook configuration carry the Secret's
/// current caBundle (`None`: not yet); `settle` is how long a change takes
/// to reach the API server and every replica (seconds).
pub fn next_step(m: &Material, now: i64, bundle_in_place_since: Option<i64>, settle: i64) -> Step {
    if now >= m.signer.cert.not_after {
        return Step::Replace;
    }
    let serving_due = now >= m.serving.cert.renew_at();
    match &m.rotation {
        Rotation::Trusting { since, .. } => {
            let settled = |t: i64| now >= t.saturating_add(settle);
            if settled(*since) && bundle_in_place_since.is_some_and(settled) {
                Step::SwitchToNextCa
            } else if serving_due {
                Step::RenewServing
            } else {
                Step::Wait
            }
        }
        Rotation::Switched { since, .. } => {
            if serving_due {
                Step::RenewServing
            } else if now >= since.saturating_add(settle) {
                Step::DropPreviousCa
            } else {
                Step::Wait
            }
        }
        Rotation::Steady => {
            if now >= m.signer.cert.renew_at() {
                Step::TrustNextCa
            } else if serving_due {
                Step::RenewServing
            } else {
                Step::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::certificates::material::{Dated, Keyed};

    fn dated(not_before: i64, not_after: i64) -> Dated {
        Dated {
            pem: format!("{not_before}-{not_after}"),
            not_before,
            not_after,
        }
    }

    fn keyed(not_before: i64, not_after: i64) -> Keyed {
        Keyed {
            cert: dated(not_before, not_after),
            key: String::new(),
        }
    }

    /// CA 0..3000 (renewed from 2000), serving 0..300 (renewed from 200).
    fn material(rotation: Rotation) -> Material {
        serving_from(0, rotation)
    }

    /// The same with a serving certificate from `t` to `t + 300`.
    fn serving_from(t: i64, rotation: Rotation) -> Material {
        Material {
            serving: keyed(t, t + 300),
            signer: keyed(0, 3000),
            rotation,
        }
    }

    #[test]
    fn steps_follow_the_lifetimes_and_the_rotation_phases() {
        const SETTLE: i64 = 30;
        let steady = material(Rotation::Steady);
        // Phases begun at `since`, with a serving certificate issued then.
        let trusting = |since| {
            serving_from(
                since,
                Rotation::Trusting {
                    next: keyed(since, since + 3000),
                    since,
                },
            )
        };
        let switched = |since| {
            serving_from(
                since,
                Rotation::Switched {
                    previous: dated(-3000, 100_000),
                    since,
                },
            )
        };
        let cases = [
            (&steady, 100, None, Step::Wait, "fresh"),
            (&steady, 199, None, Step::Wait, "serving before 2/3"),
            (&steady, 200, None, Step::RenewServing, "serving at 2/3"),
            (&steady, 400, None, Step::RenewServing, "serving expired"),
            (&steady, 2000, None, Step::TrustNextCa, "CA at 2/3 first"),
            (&steady, 3000, None, Step::Replace, "CA expired"),
            (&trusting(1000), 1010, Some(1000), Step::Wait, "not settled"),
            (&trusting(1000), 1030, None, Step::Wait, "bundle not seen"),
            (
                &trusting(1000),
                1030,
                Some(1010),
                Step::Wait,
                "bundle seen too recently",
            ),
            (
                &trusting(1000),
                1040,
                Some(1010),
                Step::SwitchToNextCa,
                "bundle settled",
            ),
            (
                &trusting(100),
                300,
                None,
                Step::RenewServing,
                "serving due while waiting: the old CA still signs",
            ),
            (&switched(1000), 1029, None, Step::Wait, "replicas loading"),
            (&switched(1000), 1030, None, Step::DropPreviousCa, "settled"),
            (
                &switched(100),
                300,
                None,
                Step::RenewServing,
                "serving due first",
            ),
            (&trusting(1000), 3000, None, Step::Replace, "signer expired"),
        ];
        for (m, now, seen, want, why) in cases {
            assert_eq!(next_step(m, now, seen, SETTLE), want, "{why} (t={now})");
        }
    }

    /// A whole CA life, checked every second with an API server that takes
    /// the bundle at once: the rotation ends long before the old CA does,
    /// and the old CA signs nothing after the switch.
    #[test]
    fn a_simulated_life_rotates_the_ca_before_it_expires() {
        const SETTLE: i64 = 30;
        let mut m = material(Rotation::Steady);
        let mut seen: Option<(String, i64)> = None;
        let mut steps = Vec::new();
        for now in 0..3000 {
            let bundle = m.bundle();
            let since = match &seen {
                Some((b, t)) if *b == bundle => *t,
                _ => now,
            };
            seen = Some((bundle, since));
            let step = next_step(&m, now, Some(since), SETTLE);
            let signer = m.signer.cert.clone();
            m = match step {
                Step::Wait => continue,
                Step::RenewServing => Material {
                    serving: keyed(now, (now + 300).min(signer.not_after)),
                    ..m
                },
                Step::TrustNextCa => Material {
                    rotation: Rotation::Trusting {
                        next: keyed(now, now + 3000),
                        since: now,
                    },
                    ..m
                },
                Step::SwitchToNextCa => {
                    let Rotation::Trusting { next, .. } = m.rotation else {
                        panic!("switch outside phase 1")
                    };
                    Material {
                        serving: keyed(now, now + 300),
                        signer: next,
                        rotation: Rotation::Switched {
                            previous: signer,
                            since: now,
                        },
                    }
                }
                Step::DropPreviousCa => m.drop_previous(),
                Step::Replace => panic!("the CA expired at t={now}"),
            };
            steps.push((now, step));
        }
        let at = |want: Step| steps.iter().find(|(_, s)| *s == want).map(|(t, _)| *t);
        // The new bundle is seen in place at the next check (2001).
        assert_eq!(at(Step::TrustNextCa), Some(2000));
        assert_eq!(at(Step::SwitchToNextCa), Some(2031));
        assert_eq!(at(Step::DropPreviousCa), Some(2061));
        assert_eq!(m.rotation, Rotation::Steady);
        assert_eq!(m.signer.cert.not_before, 2000, "the new CA signs");
        let renewals = steps.iter().filter(|(_, s)| *s == Step::RenewServing);
        assert!(renewals.count() >= 10, "{steps:?}");
    }
}

//! When to renew what: the one decision the Lease holder takes on every
//! check, from the Secret's content and the time. Pure: no I/O, no clock.
//! Every time is in unix milliseconds and the settle time is honoured to
//! the millisecond (a third of a 26 s life, three checks of 100 ms).
//!
//! - The serving certificate is renewed at two thirds of its life.
//! - The CA is renewed at two thirds of its life, in three steps: the new CA
//!   is trusted beside the old one; once the caBundle holding both has been
//!   in place for the settle time, the new CA signs the serving certificate;
//!   once every replica has had the settle time to load it, the old CA goes.
//! - A signer past its end is replaced at once: nothing it signed is trusted
//!   any more, so there is nothing left to overlap with.

use std::time::Duration;

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

/// What is due at `now` (unix milliseconds). `bundle_in_place_since` is
/// when this Lease holder first saw the webhook configuration carry the
/// Secret's current caBundle (`None`: not yet; unix milliseconds); `settle`
/// is how long a change takes to reach the API server and every replica.
pub fn next_step(
    m: &Material,
    now: i64,
    bundle_in_place_since: Option<i64>,
    settle: Duration,
) -> Step {
    let settle = i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
    if now >= m.signer.cert.not_after_ms() {
        return Step::Replace;
    }
    let serving_due = now >= m.serving.cert.renew_at_ms();
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
            if now >= m.signer.cert.renew_at_ms() {
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

    /// Certificates count whole seconds; the schedule's times are in ms.
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

    /// CA 0..3000 s (renewed from 2000 s), serving 0..300 s (from 200 s).
    fn material(rotation: Rotation) -> Material {
        serving_from(0, rotation)
    }

    /// The same with a serving certificate from `t` to `t + 300` (seconds).
    fn serving_from(t: i64, rotation: Rotation) -> Material {
        Material {
            serving: keyed(t, t + 300),
            signer: keyed(0, 3000),
            rotation,
        }
    }

    const S: i64 = 1000;

    #[test]
    fn steps_follow_the_lifetimes_and_the_rotation_phases() {
        let settle = Duration::from_secs(30);
        let steady = material(Rotation::Steady);
        // Phases begun at `since` (seconds), with a serving certificate issued then.
        let trusting = |since: i64| {
            serving_from(
                since,
                Rotation::Trusting {
                    next: keyed(since, since + 3000),
                    since: since * S,
                },
            )
        };
        let switched = |since: i64| {
            serving_from(
                since,
                Rotation::Switched {
                    previous: dated(-3000, 100_000),
                    since: since * S,
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
            let seen = seen.map(|t: i64| t * S);
            assert_eq!(
                next_step(m, now * S, seen, settle),
                want,
                "{why} (t={now}s)"
            );
        }
    }

    /// The cases: three checks of 100 ms (a settle of whole seconds
    /// was 0), three of 1 s begun late in a second (counted in whole
    /// seconds it shrank to 2 s), and a third of a 26 s life.
    #[test]
    fn times_are_honoured_to_the_millisecond() {
        let ms = Duration::from_millis;
        // Serving certificates from 1000 s: not due in these cases.
        let trusting = |since: i64| {
            serving_from(
                1000,
                Rotation::Trusting {
                    next: keyed(1000, 4000),
                    since,
                },
            )
        };
        let switched = |since: i64| {
            serving_from(
                1000,
                Rotation::Switched {
                    previous: dated(-3000, 100_000),
                    since,
                },
            )
        };
        let serving = Material {
            serving: keyed(0, 26),
            ..material(Rotation::Steady)
        };
        let cases = [
            (
                trusting(1_000_900),
                1_001_249,
                1_000_950,
                ms(300),
                Step::Wait,
            ),
            (
                trusting(1_000_900),
                1_001_250,
                1_000_950,
                ms(300),
                Step::SwitchToNextCa,
            ),
            (switched(1_000_999), 1_001_298, 0, ms(300), Step::Wait),
            (
                switched(1_000_999),
                1_001_299,
                0,
                ms(300),
                Step::DropPreviousCa,
            ),
            (
                trusting(1_000_999),
                1_003_000,
                1_000_999,
                ms(3000),
                Step::Wait,
            ),
            (
                trusting(1_000_999),
                1_003_998,
                1_000_999,
                ms(3000),
                Step::Wait,
            ),
            (
                trusting(1_000_999),
                1_003_999,
                1_000_999,
                ms(3000),
                Step::SwitchToNextCa,
            ),
            (switched(1_000_999), 1_003_998, 0, ms(3000), Step::Wait),
            (
                switched(1_000_999),
                1_003_999,
                0,
                ms(3000),
                Step::DropPreviousCa,
            ),
            (serving.clone(), 17_332, 0, ms(3000), Step::Wait),
            (serving, 17_333, 0, ms(3000), Step::RenewServing),
        ];
        for (m, now, seen, settle, want) in cases {
            assert_eq!(
                next_step(&m, now, Some(seen), settle),
                want,
                "t={now}ms, settle {settle:?}, {:?}",
                m.rotation
            );
        }
    }

    /// A whole CA life (`ca` seconds, serving certificates of `serving`
    /// seconds) checked every `check` from `offset` ms, with an API server
    /// that takes the bundle at once: every step taken, in order.
    fn simulate(
        ca: i64,
        serving: i64,
        check: Duration,
        offset: i64,
    ) -> (Vec<(i64, Step)>, Material) {
        let settle = check * 3;
        let step_ms = i64::try_from(check.as_millis()).expect("ms");
        let mut m = Material {
            serving: keyed(0, serving),
            signer: keyed(0, ca),
            rotation: Rotation::Steady,
        };
        let mut seen: Option<(String, i64)> = None;
        let mut steps = Vec::new();
        let mut now = offset;
        while now < ca * S {
            let bundle = m.bundle();
            let since = match &seen {
                Some((b, t)) if *b == bundle => *t,
                _ => now,
            };
            seen = Some((bundle, since));
            let step = next_step(&m, now, Some(since), settle);
            let signer = m.signer.cert.clone();
            // Certificates count whole seconds: issued from the second begun.
            let t = now / S;
            m = match step {
                Step::Wait => {
                    now += step_ms;
                    continue;
                }
                Step::RenewServing => Material {
                    serving: keyed(t, (t + serving).min(signer.not_after)),
                    ..m
                },
                Step::TrustNextCa => Material {
                    rotation: Rotation::Trusting {
                        next: keyed(t, t + ca),
                        since: now,
                    },
                    ..m
                },
                Step::SwitchToNextCa => {
                    let Rotation::Trusting { next, .. } = m.rotation else {
                        panic!("switch outside phase 1")
                    };
                    Material {
                        serving: keyed(t, t + serving),
                        signer: next,
                        rotation: Rotation::Switched {
                            previous: signer,
                            since: now,
                        },
                    }
                }
                Step::DropPreviousCa => m.drop_previous(),
                Step::Replace => panic!("the CA expired at t={now}ms"),
            };
            steps.push((now, step));
            now += step_ms;
        }
        (steps, m)
    }

    fn first(steps: &[(i64, Step)], want: Step) -> Option<i64> {
        steps.iter().find(|(_, s)| *s == want).map(|(t, _)| *t)
    }

    /// Checked every second: the rotation ends long before the old CA
    /// does, and the old CA signs nothing after the switch.
    #[test]
    fn a_simulated_life_rotates_the_ca_before_it_expires() {
        let (steps, m) = simulate(3000, 300, Duration::from_secs(1), 0);
        // The new bundle is seen in place at the next check (2001).
        assert_eq!(first(&steps, Step::TrustNextCa), Some(2_000_000));
        assert_eq!(first(&steps, Step::SwitchToNextCa), Some(2_004_000));
        assert_eq!(first(&steps, Step::DropPreviousCa), Some(2_007_000));
        assert_eq!(m.rotation, Rotation::Steady);
        assert_eq!(m.signer.cert.not_before, 2000, "the new CA signs");
        let renewals = steps.iter().filter(|(_, s)| *s == Step::RenewServing);
        assert!(renewals.count() >= 10, "{steps:?}");
    }

    /// Checked every 100 ms, off the second: each phase waits exactly its
    /// three checks (300 ms) and the rotation ends with the old CA dropped.
    #[test]
    fn a_life_checked_every_100ms_settles_each_phase_for_300ms() {
        let (steps, m) = simulate(78, 26, Duration::from_millis(100), 37);
        let trust = first(&steps, Step::TrustNextCa).expect("trusted");
        let switch = first(&steps, Step::SwitchToNextCa).expect("switched");
        let drop = first(&steps, Step::DropPreviousCa).expect("dropped");
        assert_eq!(trust, 52_037, "at two thirds of 78 s, the first check");
        // Seen in place at the next check, then three checks.
        assert_eq!(switch, trust + 100 + 300, "{steps:?}");
        assert_eq!(drop, switch + 300, "{steps:?}");
        assert_eq!(m.rotation, Rotation::Steady);
        assert_eq!(m.signer.cert.not_before, 52, "the new CA signs");
    }
}

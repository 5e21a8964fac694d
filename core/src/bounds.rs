//! The written bound on one review (SPEC §5 "Bounded"): how many items the
//! webhook may inject (targeted containers × the mounts and env vars each
//! gets) and how large its JSON Patch may be. Pure.
//!
//! The bound is checked on an upper-bound [`Estimate`] computed from what the
//! selection asks for, before the pod is diffed or any patch operation is
//! built, so a pod past the bound costs the parse and the estimate, never
//! the patch. The estimate depends only on the selection and the pod's
//! container list, never on what the pod already carries, so a pod admitted
//! once is admitted again (reinvocation stays idempotent).

use crate::text::{human_bytes, thousands};
use crate::vocabulary::ANNOTATION_PERSISTENCE;

/// Default `--max-patch-bytes`: 1 MiB. etcd stores objects of at most
/// 1.5 MiB, so a patch larger than this could not make a pod it would keep.
pub const DEFAULT_MAX_PATCH_BYTES: u64 = 1024 * 1024;
/// Default `--max-injected-items`: 10,000 mounts and env vars in all,
/// e.g. 1,000 containers of 10 each; real pods need tens.
pub const DEFAULT_MAX_INJECTED_ITEMS: u64 = 10_000;

/// Limits on one review's patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Largest JSON Patch (before base64) the webhook answers with.
    pub max_patch_bytes: u64,
    /// Most items (targeted containers × mounts and env vars each) injected.
    pub max_injected_items: u64,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_patch_bytes: DEFAULT_MAX_PATCH_BYTES,
            max_injected_items: DEFAULT_MAX_INJECTED_ITEMS,
        }
    }
}

/// An upper bound on what a review's patch would hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    /// Containers and init containers that get mounts and env.
    pub containers: u64,
    /// Mounts plus env vars each of them gets.
    pub per_container: u64,
    /// `containers × per_container`.
    pub items: u64,
    /// At least the size of the serialised JSON Patch.
    pub bytes: u64,
}

/// The patch a pod would get is past a bound. The message names the
/// numbers, the limit and the flag that sets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the patch would add {} items ({} containers × {}) / about {}, over the {}; target fewer containers with containers: in annotation {ANNOTATION_PERSISTENCE}, or select fewer stores", thousands(.estimate.items), thousands(.estimate.containers), thousands(.estimate.per_container), human_bytes(.estimate.bytes), Over(.items, .bytes))]
pub struct OverBound {
    /// The estimate that passed the bound.
    pub estimate: Estimate,
    /// `--max-injected-items`, if passed.
    pub items: Option<u64>,
    /// `--max-patch-bytes`, if passed.
    pub bytes: Option<u64>,
}

struct Over<'a>(&'a Option<u64>, &'a Option<u64>);

impl std::fmt::Display for Over<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = |n: u64| format!("limit of {} items (--max-injected-items)", thousands(n));
        let bytes = |n: u64| {
            if n < 1024 {
                format!("limit of {n} bytes (--max-patch-bytes)")
            } else {
                format!(
                    "limit of {} ({} bytes, --max-patch-bytes)",
                    human_bytes(n),
                    thousands(n)
                )
            }
        };
        match (self.0, self.1) {
            (Some(i), Some(b)) => write!(f, "{} and the {}", items(*i), bytes(*b)),
            (Some(i), None) => f.write_str(&items(*i)),
            (None, Some(b)) => f.write_str(&bytes(*b)),
            (None, None) => f.write_str("limits"),
        }
    }
}

impl Bounds {
    /// Whether a patch of at most `estimate` may be built.
    pub fn check(&self, estimate: &Estimate) -> Result<(), OverBound> {
        let items = (estimate.items > self.max_injected_items).then_some(self.max_injected_items);
        let bytes = (estimate.bytes > self.max_patch_bytes).then_some(self.max_patch_bytes);
        if items.is_none() && bytes.is_none() {
            return Ok(());
        }
        Err(OverBound {
            estimate: *estimate,
            items,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(containers: u64, per_container: u64, bytes: u64) -> Estimate {
        Estimate {
            containers,
            per_container,
            items: containers * per_container,
            bytes,
        }
    }

    #[test]
    fn within_and_past_each_bound() {
        let bounds = Bounds::default();
        let cases: Vec<(&str, Estimate, Option<&str>)> = vec![
            ("ordinary pod", estimate(3, 9, 4_000), None),
            ("exactly at both limits", estimate(2_000, 5, 1_048_576), None),
            (
                "too many items",
                estimate(5_001, 5, 9_751_756),
                Some("the patch would add 25,005 items (5,001 containers × 5) / about 9.3 MiB, over the limit of 10,000 items (--max-injected-items) and the limit of 1.0 MiB (1,048,576 bytes, --max-patch-bytes)"),
            ),
            (
                "items only",
                estimate(2_001, 5, 500_000),
                Some("the patch would add 10,005 items (2,001 containers × 5) / about 488.3 KiB, over the limit of 10,000 items (--max-injected-items); target fewer containers"),
            ),
            (
                "bytes only: a few containers, huge values",
                estimate(20, 3, 1_048_577),
                Some("the patch would add 60 items (20 containers × 3) / about 1.0 MiB, over the limit of 1.0 MiB (1,048,576 bytes, --max-patch-bytes); target fewer containers with containers: in annotation polyaxon.com/persistence, or select fewer stores"),
            ),
        ];
        for (what, e, want) in cases {
            match (bounds.check(&e), want) {
                (Ok(()), None) => {}
                (Err(err), Some(want)) => {
                    let msg = err.to_string();
                    assert!(msg.starts_with(want), "{what}: {msg}");
                    assert_eq!(err.estimate, e, "{what}");
                }
                (got, want) => panic!("{what}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn custom_bounds() {
        let tight = Bounds {
            max_patch_bytes: 100,
            max_injected_items: 1,
        };
        let err = tight.check(&estimate(1, 2, 50)).expect_err("2 items > 1");
        assert_eq!((err.items, err.bytes), (Some(1), None));
        let err = tight
            .check(&estimate(1, 1, 101))
            .expect_err("101 bytes > 100");
        assert_eq!((err.items, err.bytes), (None, Some(100)));
        assert!(
            err.to_string()
                .contains("limit of 100 bytes (--max-patch-bytes)"),
            "{err}"
        );
        assert!(tight.check(&estimate(1, 1, 100)).is_ok());
    }
}

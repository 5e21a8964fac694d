//! The estimate of a patch's size from what the selection wants, checked
//! against the bounds before any per-container work; and the serialised
//! sizes it is made of, counted without building the JSON.

use super::Wanted;
use crate::bounds::Estimate;
use crate::pod::PodView;
use crate::selection::Selection;

/// Serialised overhead of one `add` operation around its path and value:
/// `{"op":"add","path":"","value":}` and the `,` between operations.
pub(super) const OP_BYTES: u64 = r#"{"op":"add","path":"","value":},"#.len() as u64;
/// The longest pointer to a container's list item, without the index:
/// `/spec/initContainers/` + `/volumeMounts/-`.
const CONTAINER_POINTER_BYTES: u64 = "/spec/initContainers//volumeMounts/-".len() as u64;

impl Wanted<'_> {
    /// An upper bound on the patch for `containers` targeted containers, the
    /// last of which has index `max_index` in its list. Independent of what
    /// the pod already has, so a re-admitted pod gets the same estimate.
    pub fn estimate(&self, containers: usize, max_index: usize) -> Estimate {
        let containers = containers as u64;
        let per_container = (self.mounts.len() + self.env.len()) as u64;
        let index_digits = max_index.to_string().len() as u64;
        let per_item = OP_BYTES + CONTAINER_POINTER_BYTES + index_digits;
        let container_bytes = per_item * per_container + self.item_bytes;
        Estimate {
            containers,
            per_container,
            items: containers.saturating_mul(per_container),
            bytes: containers
                .saturating_mul(container_bytes)
                .saturating_add(self.shared_bytes)
                .saturating_add(2),
        }
    }
}

/// How many containers (and init containers) the selection targets, and the
/// highest index among them, for [`Wanted::estimate`].
pub fn targeted(pod: &PodView<'_>, selection: &Selection<'_>) -> (usize, usize) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let mut count = 0;
    let mut max_index = 0;
    for (_, list) in spec.lists() {
        for (i, name) in list.names().enumerate() {
            if selection.targets(name) {
                count += 1;
                max_index = max_index.max(i);
            }
        }
    }
    (count, max_index)
}

/// The size of `s` as a JSON string: quotes, and escapes (`\"`, `\n`, ...
/// two bytes; other control characters `\u00XX`, six).
pub(in crate::patch) fn json_str_bytes(s: &str) -> u64 {
    let escapes: u64 = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    s.len() as u64 + 2 + escapes
}

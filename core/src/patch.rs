//! From the pod's view and its resolved selection to the JSON Patch that
//! injects the stores (SPEC §4, §5). Pure.
//!
//! The patch only *adds*: it targets the raw object with pointers built from
//! tokens (annotation keys hold `/`), adds a missing parent list or map before
//! its children, and skips anything already present with the same value so
//! that admitting the patched pod again yields no patch. Something of ours
//! already present with a *different* value is a conflict, never overwritten.
//!
//! Three rooms: `wanted` is what the selection asks for (and its size
//! estimate), `diff` compares it with the pod and decides the operations,
//! `json` writes them as bytes.

// A `Conflict` is as large as its largest variant (the message's parts and
// the field). It is built at most once per review, on the way to a denial,
// and returned up a frame or two; boxing it would make every caller and
// test unwrap a box for no gain.
#![allow(clippy::result_large_err)]

use crate::config::Store;
use crate::pod::annotation_field;
use crate::vocabulary::ANNOTATION_PERSISTENCE;

mod covers;
mod diff;
mod json;
mod wanted;

pub use covers::covers;
pub use diff::build;
pub use json::PatchJson;
pub use wanted::{default_store, targeted, wanted, Wanted, GCS_KEY_DESCRIPTION};

/// A targeted container that sets SDK variables itself (SPEC §7): it keeps
/// its own, and these of the webhook's were left out (a warning, SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// `containers` or `initContainers`.
    pub list: &'static str,
    /// The container's index in that list.
    pub index: usize,
    /// The container's name (clipped).
    pub container: String,
    /// The SDK variables the container sets itself.
    pub own: Vec<String>,
    /// The webhook's variables it does not get (its own value differs, or
    /// it belongs to a group the container sets).
    pub left_out: Vec<String>,
}

/// Something of ours the pod already has with a different value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A mount at one of our paths that is not ours.
    #[error("container {container:?}: volumeMounts already has {path:?} (volume {existing:?}), where {what} must be mounted; remove that mount, or leave the store out of annotation polyaxon.com/persistence")]
    MountPath {
        /// The pod field concerned, e.g. `spec.containers[1].env[NAME]`.
        field: String,
        /// The container.
        container: String,
        /// The mount path.
        path: String,
        /// The volume the pod mounts there.
        existing: String,
        /// e.g. `data store "data1"`.
        what: String,
    },
    /// An env var of ours set to another value.
    #[error("container {container:?}: env {name} is already set to a different value; the webhook sets it to {ours} and never overwrites a pod's own value, so remove it from the pod")]
    Env {
        /// The pod field concerned, e.g. `spec.containers[1].env[NAME]`.
        field: String,
        /// The container.
        container: String,
        /// The variable.
        name: String,
        /// What the webhook would set, described.
        ours: String,
    },
    /// A pod mount of a volume the webhook adds (or keeps) in this review,
    /// other than exactly the mount the webhook adds: with it a pod could
    /// reach the whole outputs store, another run's directory, or write to
    /// a read-only store (SPEC §5).
    #[error("container {container:?}: volumeMounts mounts the webhook's volume {volume:?} ({what}) at {mount}; {why}, so remove that mount")]
    ForeignMount {
        /// The pod field concerned, e.g. `spec.containers[1].env[NAME]`.
        field: String,
        /// The container.
        container: String,
        /// The pod's mount: its path, then e.g. ` with subPath "other-run"`
        /// and ` read-write` when the store is read-only.
        mount: String,
        /// The volume.
        volume: String,
        /// e.g. `outputs store "outputs1"`.
        what: String,
        /// What the webhook adds instead.
        why: String,
    },
    /// Two of the selected stores would mount at the same path.
    #[error("{first} and {second} would both be mounted at {path:?}; change the outputs sub-path or leave one store out of annotation polyaxon.com/persistence")]
    OwnMounts {
        /// The path.
        path: String,
        /// One store.
        first: String,
        /// The other.
        second: String,
    },
}

impl Conflict {
    /// The field to fix, as a Kubernetes field path: the pod's own item,
    /// or the selection when two selected stores collide.
    pub fn field(&self) -> String {
        match self {
            Conflict::MountPath { field, .. }
            | Conflict::Env { field, .. }
            | Conflict::ForeignMount { field, .. } => field.clone(),
            Conflict::OwnMounts { .. } => annotation_field(ANNOTATION_PERSISTENCE),
        }
    }
}

pub(crate) fn describe(store: &Store) -> String {
    format!("{} store {:?}", store.role(), store.name())
}

#[cfg(test)]
mod tests;

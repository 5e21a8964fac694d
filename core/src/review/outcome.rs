//! Typed outcomes (SPEC §8): the stable, machine-readable reason of every
//! skip and refusal, and the denial that carries it to the edge with the
//! field concerned and the message for the pod's author. Metrics label
//! reviews with [`Reason::as_str`] and logs carry it, so these names are a
//! contract: add new ones, never rename one.

use std::fmt;

use crate::bounds::OverBound;
use crate::patch::Conflict;
use crate::pod::annotation_field;
use crate::selection::SelectionError;
use crate::vocabulary::ANNOTATION_PERSISTENCE;

/// Why a review was not simply patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The selection names a store the config does not have.
    UnknownStore,
    /// The selection names a store limited to other namespaces.
    StoreNotInNamespace,
    /// The selection annotation is not valid: syntax, an outputs list, an
    /// unknown key.
    BadSelection,
    /// `containers:` names a container the pod does not have.
    UnknownContainer,
    /// `containers: []`.
    NoContainers,
    /// The outputs sub-path, from whichever rule, is not safe.
    BadSubpath,
    /// `polyaxon.com/unique-name` is not a Polyaxon run name.
    BadUniqueName,
    /// Something else is mounted at one of our paths.
    MountConflict,
    /// One of our env vars is already set to another value.
    EnvConflict,
    /// The pod mounts one of our volumes other than exactly as we do.
    ForeignMount,
    /// Two selected stores would mount at the same path.
    OwnMounts,
    /// The patch would pass `--max-injected-items` or `--max-patch-bytes`.
    OverBound,
    /// The request has a uid but is not a well-formed AdmissionReview of a Pod.
    Malformed,
    /// Not a Pod (or a Pod subresource).
    NotPod,
    /// Not a CREATE.
    NotCreate,
    /// The pod carries the opt-out label.
    OptedOut,
    /// The pod already has everything (a reinvocation or a replay).
    AlreadyInjected,
}

/// Which of the review outcomes a reason belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed with a patch.
    Patched,
    /// Allowed as is.
    Unchanged,
    /// Refused by policy.
    Denied,
    /// Refused because the request is malformed.
    Invalid,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Patched,
        Outcome::Unchanged,
        Outcome::Denied,
        Outcome::Invalid,
    ];

    /// The `outcome` label of logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

impl Reason {
    /// Every reason, in declaration order (so metrics can create every
    /// labelled series up front).
    pub const ALL: [Reason; 17] = [
        Reason::UnknownStore,
        Reason::StoreNotInNamespace,
        Reason::BadSelection,
        Reason::UnknownContainer,
        Reason::NoContainers,
        Reason::BadSubpath,
        Reason::BadUniqueName,
        Reason::MountConflict,
        Reason::EnvConflict,
        Reason::ForeignMount,
        Reason::OwnMounts,
        Reason::OverBound,
        Reason::Malformed,
        Reason::NotPod,
        Reason::NotCreate,
        Reason::OptedOut,
        Reason::AlreadyInjected,
    ];

    /// The stable kebab-case name, for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownStore => "unknown-store",
            Reason::StoreNotInNamespace => "store-not-in-namespace",
            Reason::BadSelection => "bad-selection",
            Reason::UnknownContainer => "unknown-container",
            Reason::NoContainers => "no-containers",
            Reason::BadSubpath => "bad-subpath",
            Reason::BadUniqueName => "bad-unique-name",
            Reason::MountConflict => "mount-conflict",
            Reason::EnvConflict => "env-conflict",
            Reason::ForeignMount => "foreign-mount",
            Reason::OwnMounts => "own-mounts",
            Reason::OverBound => "over-bound",
            Reason::Malformed => "malformed",
            Reason::NotPod => "not-pod",
            Reason::NotCreate => "not-create",
            Reason::OptedOut => "opted-out",
            Reason::AlreadyInjected => "already-injected",
        }
    }

    /// The outcome a review with this reason has.
    pub fn outcome(self) -> Outcome {
        match self {
            Reason::NotPod | Reason::NotCreate | Reason::OptedOut | Reason::AlreadyInjected => {
                Outcome::Unchanged
            }
            Reason::Malformed => Outcome::Invalid,
            _ => Outcome::Denied,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a denial was built from, kept whole so that callers can match
/// its variant and reach its own source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DenialCause {
    /// The selection could not be resolved.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// The pod already has something of ours with another value.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The patch would be too large.
    #[error(transparent)]
    OverBound(#[from] OverBound),
}

/// A refusal by policy: the reason, the field the pod's author must fix
/// (e.g. `metadata.annotations[polyaxon.com/persistence]` or
/// `spec.containers[1].env[POLYAXON_RUN_OUTPUTS_PATH]`) and the message.
/// Its `Display` is the message the AdmissionReview response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    reason: Reason,
    field: Option<String>,
    cause: DenialCause,
}

impl Denial {
    /// The stable reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The field concerned, as a Kubernetes field path, where known.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The error the denial was built from.
    pub fn cause(&self) -> &DenialCause {
        &self.cause
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.cause, f)
    }
}

impl std::error::Error for Denial {
    // The cause's own source (e.g. what is wrong with a sub-path), not the
    // cause itself: its message is already this one's.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.cause)
    }
}

impl From<&SelectionError> for Reason {
    /// The stable reason of the denial a selection error becomes: owned
    /// here, with the reasons, so selection never names review.
    fn from(e: &SelectionError) -> Reason {
        match e {
            SelectionError::Syntax { .. } | SelectionError::OutputsList { .. } => {
                Reason::BadSelection
            }
            SelectionError::UnknownStore { .. } => Reason::UnknownStore,
            SelectionError::NotAvailable { .. } => Reason::StoreNotInNamespace,
            SelectionError::UnknownContainer { .. } => Reason::UnknownContainer,
            SelectionError::NoContainers => Reason::NoContainers,
            SelectionError::SubPath { .. } => Reason::BadSubpath,
            SelectionError::UniqueName { .. } => Reason::BadUniqueName,
        }
    }
}

impl From<&Conflict> for Reason {
    /// The stable reason of the denial a patch conflict becomes.
    fn from(e: &Conflict) -> Reason {
        match e {
            Conflict::MountPath { .. } => Reason::MountConflict,
            Conflict::Env { .. } => Reason::EnvConflict,
            Conflict::ForeignMount { .. } => Reason::ForeignMount,
            Conflict::OwnMounts { .. } => Reason::OwnMounts,
        }
    }
}

impl From<SelectionError> for Denial {
    fn from(e: SelectionError) -> Denial {
        Denial {
            reason: Reason::from(&e),
            field: Some(e.field()),
            cause: e.into(),
        }
    }
}

impl From<Conflict> for Denial {
    fn from(e: Conflict) -> Denial {
        Denial {
            reason: Reason::from(&e),
            field: Some(e.field()),
            cause: e.into(),
        }
    }
}

impl From<OverBound> for Denial {
    fn from(e: OverBound) -> Denial {
        Denial {
            reason: Reason::OverBound,
            // The way under the bound is `containers:` in the selection.
            field: Some(annotation_field(ANNOTATION_PERSISTENCE)),
            cause: e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_order_with_unique_kebab_names() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in Reason::ALL.iter().enumerate() {
            // Metrics index their counters by the discriminant.
            assert_eq!(*r as usize, i, "{r:?}");
            let name = r.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
        }
    }
}

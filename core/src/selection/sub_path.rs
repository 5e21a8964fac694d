//! The outputs sub-path rules (SPEC §3): the explicit annotation, the
//! unique run name, the derived `<namespace>/<job name>` or `<namespace>/<name>`, and the sub-path an
//! earlier admission recorded; each result checked against its store so
//! that the kubelet can create it and it stays inside the store.

use std::borrow::Cow;

use super::{PodIdentity, SelectionError};
use crate::config::Store;
use crate::pod::{annotation_field, Annotations};
use crate::text::clip;
use crate::vocabulary::{ANNOTATION_INJECTED, ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_UNIQUE_NAME};

/// Where an outputs sub-path came from (SPEC §3's rules), for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubPathSource {
    /// One of the sub-path annotations.
    Annotation(&'static str),
    /// `<namespace>/<job name>`, for a pod whose controller is a Job.
    JobName,
    /// `<namespace>/<pod name>`, derived when no annotation gives one.
    PodName,
    /// `<namespace>/<generateName><uid>`, for a pod without a name yet.
    GenerateName,
    /// The `outputsPath` an earlier admission recorded, kept.
    Recorded,
}

impl SubPathSource {
    /// The pod field the sub-path came from, as a Kubernetes field path.
    pub fn field(&self) -> String {
        match self {
            SubPathSource::Annotation(key) => annotation_field(key),
            SubPathSource::JobName => "metadata.ownerReferences".to_owned(),
            SubPathSource::PodName => "metadata.name".to_owned(),
            SubPathSource::GenerateName => "metadata.generateName".to_owned(),
            SubPathSource::Recorded => annotation_field(ANNOTATION_INJECTED),
        }
    }
}

impl std::fmt::Display for SubPathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubPathSource::Annotation(name) => write!(f, "annotation {name}"),
            SubPathSource::JobName => f.write_str(
                "the pod's <namespace>/<job name> (its controller is a Job; no sub-path annotation given)",
            ),
            SubPathSource::PodName => {
                f.write_str("the pod's <namespace>/<name> (no sub-path annotation given)")
            }
            SubPathSource::GenerateName => f.write_str(
                "the pod's <namespace>/<generateName><uid> (no name and no sub-path annotation given)",
            ),
            SubPathSource::Recorded => write!(
                f,
                "the outputsPath recorded in annotation {ANNOTATION_INJECTED} (kept from an earlier admission)"
            ),
        }
    }
}

/// The sub-path recorded by an earlier admission, when it lies under the
/// selected store as a clean relative path (and, for a store that isolates
/// namespaces, under `<namespace>/`). Anything else was not ours to keep
/// and the sub-path is derived again. A kept path still goes through every
/// check of [`checked`].
pub(super) fn kept_sub_path<'p>(
    store: &Store,
    namespace: &str,
    injected_path: Option<&'p str>,
) -> Option<&'p str> {
    let base = store.path().trim_end_matches('/');
    let rest = injected_path?.strip_prefix(base)?.strip_prefix('/')?;
    let structural = !rest.is_empty()
        && !rest.starts_with('/')
        && rest.split('/').all(|s| !matches!(s, "" | "." | ".."));
    if !structural {
        return None;
    }
    if store.isolates_namespaces() && !in_namespace_dir(rest, namespace) {
        return None;
    }
    Some(rest)
}

/// Whether `sub_path` lies strictly inside `<namespace>/`.
fn in_namespace_dir(sub_path: &str, namespace: &str) -> bool {
    sub_path
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| !rest.is_empty())
}

/// A sub-path from `source`, checked against the store it will be joined
/// to: every rule's result must be one the kubelet can create (SPEC §3).
pub(super) fn checked(
    source: SubPathSource,
    store: &Store,
    path: Cow<'_, str>,
) -> Result<String, SelectionError> {
    match super::kubelet::check_sub_path(&path, store.path()) {
        Ok(()) => Ok(path.into_owned()),
        Err(why) => Err(SelectionError::SubPath {
            annotation: source,
            path: clip(&path),
            why,
        }),
    }
}

/// SPEC §3's sub-path rules, first match wins. A store with
/// `isolateNamespaces` puts the explicit and unique-name forms under
/// `<namespace>/`; the derived form already starts there.
pub(super) fn sub_path(
    pod: PodIdentity<'_>,
    store: &Store,
    annotations: &Annotations<'_>,
) -> Result<(SubPathSource, String), SelectionError> {
    let ns = pod.namespace;
    let isolated = |path: String| -> Cow<'static, str> {
        if store.isolates_namespaces() {
            Cow::Owned(format!("{ns}/{path}"))
        } else {
            Cow::Owned(path)
        }
    };
    if let Some(explicit) = &annotations.outputs_subpath {
        let source = SubPathSource::Annotation(ANNOTATION_OUTPUTS_SUBPATH);
        // Checked as written first, so the message quotes what the user wrote.
        let own = checked(source, store, Cow::Borrowed(explicit))?;
        if !store.isolates_namespaces() {
            return Ok((source, own));
        }
        return Ok((source, checked(source, store, isolated(own))?));
    }
    if let Some(unique) = &annotations.unique_name {
        let mapped = unique_name_path(unique).ok_or_else(|| SelectionError::UniqueName {
            value: clip(unique),
        })?;
        let source = SubPathSource::Annotation(ANNOTATION_UNIQUE_NAME);
        return Ok((source, checked(source, store, isolated(mapped))?));
    }
    let (source, path) = match (pod.job, pod.name, pod.generate_name) {
        // A retried pod of the same Job continues in its Job's directory.
        (Some(job), _, _) => (SubPathSource::JobName, format!("{ns}/{job}")),
        (None, Some(name), _) if !name.is_empty() => {
            (SubPathSource::PodName, format!("{ns}/{name}"))
        }
        (None, _, Some(prefix)) => (
            SubPathSource::GenerateName,
            format!("{ns}/{prefix}{}", pod.uid),
        ),
        _ => (SubPathSource::PodName, format!("{ns}/{}", pod.uid)),
    };
    Ok((source, checked(source, store, Cow::Owned(path))?))
}

/// Polyaxon 0.x's mapping of a dotted run name to its outputs directory.
fn unique_name_path(unique: &str) -> Option<String> {
    const KINDS: [&str; 4] = ["jobs", "builds", "notebooks", "tensorboards"];
    let parts: Vec<&str> = unique.split('.').collect();
    if parts.iter().any(|p| p.is_empty() || p.contains('/')) {
        return None;
    }
    let is_id = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [user, project, id] if is_id(id) => Some(format!("{user}/{project}/experiments/{id}")),
        [user, project, group, id] if is_id(group) && is_id(id) => {
            Some(format!("{user}/{project}/groups/{group}/{id}"))
        }
        [user, project, kind, id] if KINDS.contains(kind) && is_id(id) => {
            Some(format!("{user}/{project}/{kind}/{id}"))
        }
        _ => None,
    }
}

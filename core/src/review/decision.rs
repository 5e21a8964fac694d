//! The decision: from the request's typed view to what the webhook does
//! with the pod (skip, patch or deny), in the order SPEC §5 fixes. It reads
//! no bytes and writes none; [`super::codec`] does.

use super::codec::{clip_message, patched_room, ObjectIn, RequestIn};
use super::outcome::{Denial, Outcome, Reason};
use super::Subject;
use crate::bounds::Bounds;
use crate::config::Config;
use crate::patch;
use crate::patch::{Kept, PatchJson};
use crate::pod::{Keep, PodView};
use crate::selection::{self, PodIdentity, Selection};
use crate::text::{clip, clip_list};
use crate::vocabulary::{
    ANNOTATION_INJECTED, ANNOTATION_PERSISTENCE, AUDIT_DATA, AUDIT_OUTPUTS, AUDIT_OUTPUTS_PATH,
};

use super::{Notes, Trace};

/// Why a pod passed through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a Pod (or a Pod subresource).
    NotPod,
    /// Not a CREATE.
    NotCreate,
    /// The pod carries `polyaxon.com/persistence-injection: disabled`.
    OptedOut,
    /// The pod already has everything (a reinvocation or a replay).
    AlreadyInjected,
}

impl Skip {
    /// A short reason for logs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotPod => "not a pod",
            Skip::NotCreate => "not a create",
            Skip::OptedOut => "opted out by label",
            Skip::AlreadyInjected => "already injected",
        }
    }

    /// The stable reason, for metrics and logs.
    pub fn reason(self) -> Reason {
        match self {
            Skip::NotPod => Reason::NotPod,
            Skip::NotCreate => Reason::NotCreate,
            Skip::OptedOut => Reason::OptedOut,
            Skip::AlreadyInjected => Reason::AlreadyInjected,
        }
    }
}

/// What the webhook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed as is.
    Unchanged(Skip),
    /// Allowed with this patch.
    Patched(PatchJson),
    /// Refused by policy: the selection, a conflict or a bound. Its
    /// `Display` is the message for the user.
    Denied(Denial),
    /// Refused because the request itself is malformed (but had a uid to answer).
    Invalid(String),
}

impl Decision {
    /// The outcome (its label in logs and metrics: [`Outcome::as_str`]).
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Unchanged(_) => Outcome::Unchanged,
            Decision::Patched(_) => Outcome::Patched,
            Decision::Denied(_) => Outcome::Denied,
            Decision::Invalid(_) => Outcome::Invalid,
        }
    }

    /// Why the pod was not patched; `None` when it was.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Unchanged(skip) => Some(skip.reason()),
            Decision::Patched(_) => None,
            Decision::Denied(denial) => Some(denial.reason()),
            Decision::Invalid(_) => Some(Reason::Malformed),
        }
    }
}

pub(super) fn decide(
    config: &Config,
    bounds: &Bounds,
    req: &RequestIn<'_>,
    notes: &mut Notes,
    mut trace: Option<&mut Trace>,
) -> (Subject, Decision) {
    let mut subject = Subject {
        uid: req.uid.to_string(),
        namespace: req.namespace.as_deref().unwrap_or_default().to_owned(),
        name: req.name.as_deref().unwrap_or_default().to_owned(),
        operation: req.operation.as_deref().unwrap_or_default().to_owned(),
        dry_run: req.dry_run.unwrap_or(false),
    };
    if req.is_pod() != Some(true) {
        return (subject, Decision::Unchanged(Skip::NotPod));
    }
    if req.operation.as_deref() != Some("CREATE") {
        return (subject, Decision::Unchanged(Skip::NotCreate));
    }
    let parsed;
    let pod: &PodView = match &req.object {
        ObjectIn::Pod(pod) => pod,
        ObjectIn::Absent => {
            return (
                subject,
                Decision::Invalid("request.object is missing".into()),
            )
        }
        ObjectIn::Raw(raw) => {
            let text = raw.get();
            let result = if text.starts_with('{') {
                crate::pod::read(text, Keep::Ours(config.relevant())).map_err(|e| e.to_string())
            } else {
                Err("it is not a JSON object".to_owned())
            };
            match result {
                Ok(pod) => {
                    parsed = pod;
                    &parsed
                }
                Err(e) => {
                    return (
                        subject,
                        Decision::Invalid(clip_message(format!(
                            "request.object is not a valid Pod: {e}"
                        ))),
                    )
                }
            }
        }
        ObjectIn::Skipped => {
            // Only skipped once known not to be a Pod CREATE, which returned above.
            return (subject, Decision::Unchanged(Skip::NotPod));
        }
    };
    let meta = pod.metadata.as_ref();
    let name = meta
        .and_then(|m| m.name.as_deref())
        .or(req.name.as_deref())
        .filter(|n| !n.is_empty());
    let generate_name = meta.and_then(|m| m.generate_name.as_deref());
    let namespace = req
        .namespace
        .as_deref()
        .or_else(|| meta.and_then(|m| m.namespace.as_deref()))
        .filter(|n| !n.is_empty());
    subject.name = match (name, generate_name) {
        (Some(n), _) => n.to_owned(),
        (None, Some(g)) => format!("{g}*"),
        (None, None) => String::new(),
    };
    let Some(namespace) = namespace else {
        return (
            subject,
            Decision::Invalid("request.namespace is missing".into()),
        );
    };
    subject.namespace = namespace.to_owned();
    if meta.is_some_and(|m| m.labels.0) {
        return (subject, Decision::Unchanged(Skip::OptedOut));
    }
    let annotations = pod.annotations();
    let injected = annotations.injected_outputs_path();
    let identity = PodIdentity {
        namespace,
        name,
        generate_name,
        job: pod.controller_job(),
        uid: &req.uid,
    };
    let container_names = pod.container_names();
    let selection = match selection::resolve(
        config,
        identity,
        &annotations,
        injected.as_deref(),
        container_names.clone(),
    ) {
        Ok(s) => s,
        Err(e) => return (subject, Decision::Denied(e.into())),
    };
    if let Some(trace) = trace.as_deref_mut() {
        trace.record_selection(&selection);
    }
    let pod_volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let wanted = match patch::wanted(&selection, pod_volumes) {
        Ok(w) => w,
        Err(conflict) => return (subject, Decision::Denied(conflict.into())),
    };
    if let Some(trace) = trace.as_deref_mut() {
        (trace.mounts, trace.env) = wanted.describe();
        trace.targeted = container_names
            .clone()
            .map(|c| (c.to_string(), selection.targets(c)))
            .collect();
    }
    // The bound is checked on an estimate, before any per-container work.
    let (targeted, max_index) = patch::targeted(pod, &selection);
    let estimate = wanted.estimate(targeted, max_index);
    if let Err(over) = bounds.check(&estimate) {
        return (subject, Decision::Denied(over.into()));
    }
    let mut kept = Vec::new();
    let audit = audit(&selection);
    // Room for the patch's response up front: the base64 of the estimate
    // (an upper bound on the patch) and the envelope, so that the buffer
    // is never grown and copied (pages never written are never touched);
    // within reason when unbounded.
    let capacity = usize::try_from(estimate.bytes.min(16 << 20))
        .ok()
        .and_then(|bytes| base64::encoded_len(bytes, true))
        .map_or(0, |b64| b64 + patched_room(&req.uid, &audit));
    let decision = match patch::build(pod, &selection, &wanted, &mut kept, capacity) {
        Ok(Some(p)) => {
            debug_assert!(
                p.as_bytes().len() as u64 <= estimate.bytes,
                "the estimate is an upper bound"
            );
            Decision::Patched(p)
        }
        Ok(None) => Decision::Unchanged(Skip::AlreadyInjected),
        Err(conflict) => Decision::Denied(conflict.into()),
    };
    if !matches!(decision, Decision::Denied(_)) {
        notes.warnings = warnings(&selection, &kept, container_names);
        if matches!(decision, Decision::Patched(_)) {
            notes.audit = audit;
        }
    }
    if let Some(trace) = trace {
        trace.kept = kept;
    }
    (subject, decision)
}

/// SPEC §8's warnings: where the pod gets something other than its author
/// would assume. None on the ordinary path (and nothing allocated).
fn warnings<'p>(
    selection: &Selection<'_>,
    kept: &[Kept],
    containers: impl Iterator<Item = &'p str> + Clone,
) -> Vec<String> {
    let mut out = Vec::new();
    for k in kept {
        out.push(format!(
            "container {:?} sets {} itself and keeps its own: the webhook left out {}",
            k.container,
            k.own.join(", "),
            k.left_out.join(", ")
        ));
    }
    if let Some(outputs) = &selection.outputs {
        if let Some(today) = &outputs.derived {
            let base = outputs.store.path().trim_end_matches('/');
            out.push(format!(
                "outputs path {:?} is kept from annotation {ANNOTATION_INJECTED}; today's rules give {:?}",
                clip(&outputs.path),
                clip(&format!("{base}/{today}"))
            ));
        }
    }
    if selection.containers.is_some() {
        // Counted, then read again for the names shown: never collected.
        let left = containers.filter(|c| !selection.targets(c));
        let count = left.clone().count();
        if count > 0 {
            let (noun, verb) = if count == 1 {
                ("container", "gets")
            } else {
                ("containers", "get")
            };
            out.push(format!(
                "{noun} {} {verb} no stores: annotation {ANNOTATION_PERSISTENCE} targets only the containers it names in containers:",
                clip_list(left, count),
            ));
        }
    }
    out
}

/// SPEC §8's audit annotations of a patched pod: the selected stores and
/// the outputs path (the API server prefixes the keys with the webhook's
/// name).
fn audit(selection: &Selection<'_>) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        AUDIT_DATA,
        clip_list(
            selection.data.iter().map(|s| s.name()),
            selection.data.len(),
        ),
    )];
    if let Some(outputs) = &selection.outputs {
        out.push((AUDIT_OUTPUTS, outputs.store.name().to_owned()));
        out.push((AUDIT_OUTPUTS_PATH, clip(&outputs.path)));
    }
    out
}

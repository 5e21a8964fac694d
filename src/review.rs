//! AdmissionReview bytes in, AdmissionReview bytes out: the one entry point
//! shared by the HTTPS server and the `mutate` command. Pure.
//!
//! The request is read through a borrowed, typed view of only the fields the
//! decision needs; the response echoes the request's uid and apiVersion and
//! carries the patch as base64 (the wire form the API server expects, pinned
//! by tests against real captures; see kube-rs/kube#1781 for how a typed
//! `Vec<u8>` gets this wrong).

use std::borrow::Cow;

use base64::Engine as _;
use json_patch::Patch;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::Config;
use crate::patch;
use crate::pod::PodView;
use crate::selection::{self, PodIdentity};

/// `admission.k8s.io/v1`, what current API servers send.
pub const API_V1: &str = "admission.k8s.io/v1";
/// `admission.k8s.io/v1beta1`, answered in kind for old registrations.
pub const API_V1BETA1: &str = "admission.k8s.io/v1beta1";

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
}

/// What the webhook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed as is.
    Unchanged(Skip),
    /// Allowed with this patch.
    Patched(Patch),
    /// Refused by policy: the selection or a conflict. The message is for the user.
    Denied(String),
    /// Refused because the request itself is malformed (but had a uid to answer).
    Invalid(String),
}

impl Decision {
    /// The outcome label used in logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Unchanged(_) => "unchanged",
            Decision::Patched(_) => "patched",
            Decision::Denied(_) => "denied",
            Decision::Invalid(_) => "invalid",
        }
    }
}

/// Who and what was reviewed, for the caller's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// `request.uid`.
    pub uid: String,
    /// `request.namespace`.
    pub namespace: String,
    /// The pod's name, or its generateName followed by `*`.
    pub name: String,
    /// `request.operation`.
    pub operation: String,
    /// `request.dryRun`.
    pub dry_run: bool,
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    /// What was reviewed.
    pub subject: Subject,
    /// What was decided.
    pub decision: Decision,
    /// The AdmissionReview response body, ready to send.
    pub response: Vec<u8>,
}

/// A body that cannot be answered with an AdmissionReview at all (there is no
/// uid to echo). The server answers these with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an AdmissionReview with a request uid.
    #[error("the body is not an AdmissionReview: {0}")]
    NotReview(String),
    /// An AdmissionReview of a version this webhook does not speak.
    #[error("unsupported AdmissionReview apiVersion {0:?} (expected {API_V1} or {API_V1BETA1})")]
    Version(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Option<Gvk<'a>>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Gvk<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
}

/// The least a body must have to be answered: used when the full view fails,
/// so a malformed request still gets an AdmissionReview naming the problem.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UidOnly<'a> {
    #[serde(borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: UidOnlyRequest<'a>,
}

#[derive(Deserialize)]
struct UidOnlyRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(default, rename = "object")]
    _object: Option<IgnoredAny>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
}

/// Reviews one AdmissionReview body against `config`.
pub fn review(config: &Config, body: &[u8]) -> Result<Reviewed, ReviewError> {
    let parsed: ReviewIn = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => return malformed(body, e),
    };
    let api_version = check_version(parsed.api_version.as_deref())?;
    if let Some(kind) = parsed.kind.as_deref() {
        if kind != "AdmissionReview" {
            return Err(ReviewError::NotReview(format!(
                "kind is {kind:?}, expected \"AdmissionReview\""
            )));
        }
    }
    let Some(request) = parsed.request else {
        return Err(ReviewError::NotReview("it has no request".into()));
    };
    let (subject, decision) = decide(config, &request);
    let response = respond(api_version, &subject.uid, &decision);
    Ok(Reviewed {
        subject,
        decision,
        response,
    })
}

fn check_version(v: Option<&str>) -> Result<&'static str, ReviewError> {
    match v {
        Some(API_V1) => Ok(API_V1),
        Some(API_V1BETA1) => Ok(API_V1BETA1),
        Some(other) => Err(ReviewError::Version(other.to_owned())),
        None => Err(ReviewError::NotReview("apiVersion is missing".into())),
    }
}

/// The full view failed: answer with an `Invalid` decision if a uid can be
/// found, else refuse the body.
fn malformed(body: &[u8], error: serde_json::Error) -> Result<Reviewed, ReviewError> {
    if error.is_syntax() || error.is_eof() {
        return Err(ReviewError::NotJson(error.to_string()));
    }
    let Ok(min) = serde_json::from_slice::<UidOnly>(body) else {
        return Err(ReviewError::NotReview(error.to_string()));
    };
    let api_version = check_version(min.api_version.as_deref())?;
    let decision = Decision::Invalid(format!("malformed AdmissionReview: {error}"));
    let response = respond(api_version, &min.request.uid, &decision);
    Ok(Reviewed {
        subject: Subject {
            uid: min.request.uid.into_owned(),
            ..Subject::default()
        },
        decision,
        response,
    })
}

fn decide(config: &Config, req: &RequestIn<'_>) -> (Subject, Decision) {
    let mut subject = Subject {
        uid: req.uid.to_string(),
        namespace: req.namespace.as_deref().unwrap_or_default().to_owned(),
        name: req.name.as_deref().unwrap_or_default().to_owned(),
        operation: req.operation.as_deref().unwrap_or_default().to_owned(),
        dry_run: req.dry_run.unwrap_or(false),
    };
    let is_pod = req
        .kind
        .as_ref()
        .is_some_and(|k| k.group.is_empty() && k.kind == "Pod")
        && req.sub_resource.as_deref().unwrap_or_default().is_empty();
    if !is_pod {
        return (subject, Decision::Unchanged(Skip::NotPod));
    }
    if req.operation.as_deref() != Some("CREATE") {
        return (subject, Decision::Unchanged(Skip::NotCreate));
    }
    let Some(object) = req.object else {
        return (
            subject,
            Decision::Invalid("request.object is missing".into()),
        );
    };
    let pod: PodView = match serde_json::from_str(object.get()) {
        Ok(pod) => pod,
        Err(e) => {
            return (
                subject,
                Decision::Invalid(format!("request.object is not a valid Pod: {e}")),
            )
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
    let injected = patch::injected_outputs_path(annotations.injected.as_deref());
    let identity = PodIdentity {
        namespace,
        name,
        generate_name,
        uid: &req.uid,
    };
    let containers = pod.container_names();
    let selection = match selection::resolve(
        config,
        identity,
        &annotations,
        injected.as_deref(),
        &containers,
    ) {
        Ok(s) => s,
        Err(e) => return (subject, Decision::Denied(e.to_string())),
    };
    let decision = match patch::build(&pod, &selection) {
        Ok(Some(p)) => Decision::Patched(p),
        Ok(None) => Decision::Unchanged(Skip::AlreadyInjected),
        Err(conflict) => Decision::Denied(conflict.to_string()),
    };
    (subject, decision)
}

fn respond(api_version: &str, uid: &str, decision: &Decision) -> Vec<u8> {
    let mut response = ResponseOut {
        uid,
        allowed: true,
        patch_type: None,
        patch: None,
        status: None,
    };
    match decision {
        Decision::Unchanged(_) => {}
        Decision::Patched(p) => {
            let json = serde_json::to_vec(p).expect("a JSON Patch always serialises");
            response.patch_type = Some("JSONPatch");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        }
        Decision::Denied(message) | Decision::Invalid(message) => {
            response.allowed = false;
            response.status = Some(StatusOut {
                status: "Failure",
                code: 400,
                reason: "BadRequest",
                message,
            });
        }
    }
    serde_json::to_vec(&ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response,
    })
    .expect("a response of strings always serialises")
}

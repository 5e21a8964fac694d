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

use crate::bounds::Bounds;
use crate::config::Config;
use crate::names;
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

/// The request, read in one pass. The API server sends `kind`, `subResource`
/// and `operation` before `object`, so a Pod CREATE's object is read straight
/// into a [`PodView`] and anything else is skipped unread. When `object`
/// comes first it is kept raw and read once the rest is known.
struct RequestIn<'a> {
    uid: Cow<'a, str>,
    kind: Option<Gvk<'a>>,
    sub_resource: Option<Cow<'a, str>>,
    operation: Option<Cow<'a, str>>,
    namespace: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    dry_run: Option<bool>,
    object: ObjectIn<'a>,
}

// One per request, on the stack: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum ObjectIn<'a> {
    /// Absent or null.
    Absent,
    /// A Pod CREATE's object, already read.
    Pod(PodView<'a>),
    /// Read before the fields that say what it is.
    Raw(&'a RawValue),
    /// Not a Pod CREATE: never read.
    Skipped,
}

impl RequestIn<'_> {
    /// Whether this is about a Pod itself (not a subresource); `None` until
    /// `kind` has been read.
    fn is_pod(&self) -> Option<bool> {
        let kind = self.kind.as_ref()?;
        Some(
            kind.group.is_empty()
                && kind.kind == "Pod"
                && self.sub_resource.as_deref().unwrap_or_default().is_empty(),
        )
    }

    /// Whether this is a CREATE of a Pod. `None` while a deciding field has
    /// not been read yet.
    fn is_pod_create(&self) -> Option<bool> {
        if !self.is_pod()? {
            return Some(false);
        }
        Some(self.operation.as_deref()? == "CREATE")
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RequestIn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = RequestIn<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an AdmissionRequest object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                use serde::de::Error as _;
                fn once<T, E: serde::de::Error>(
                    slot: &mut Option<T>,
                    key: &'static str,
                    value: T,
                ) -> Result<(), E> {
                    if slot.replace(value).is_some() {
                        return Err(E::duplicate_field(key));
                    }
                    Ok(())
                }
                let mut uid = None;
                let mut req = RequestIn {
                    uid: Cow::Borrowed(""),
                    kind: None,
                    sub_resource: None,
                    operation: None,
                    namespace: None,
                    name: None,
                    dry_run: None,
                    object: ObjectIn::Absent,
                };
                let mut seen_object = false;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "uid" => once(&mut uid, "uid", map.next_value::<Cow<'de, str>>()?)?,
                        "kind" => once(&mut req.kind, "kind", map.next_value()?)?,
                        "subResource" => {
                            once(&mut req.sub_resource, "subResource", map.next_value()?)?
                        }
                        "operation" => once(&mut req.operation, "operation", map.next_value()?)?,
                        "namespace" => once(&mut req.namespace, "namespace", map.next_value()?)?,
                        "name" => once(&mut req.name, "name", map.next_value()?)?,
                        "dryRun" => once(&mut req.dry_run, "dryRun", map.next_value()?)?,
                        "object" => {
                            if std::mem::replace(&mut seen_object, true) {
                                return Err(M::Error::duplicate_field("object"));
                            }
                            req.object = match req.is_pod_create() {
                                Some(true) => map
                                    .next_value_seed(PodSeed)?
                                    .map_or(ObjectIn::Absent, ObjectIn::Pod),
                                Some(false) => {
                                    map.next_value::<IgnoredAny>()?;
                                    ObjectIn::Skipped
                                }
                                None => map
                                    .next_value::<Option<&'de RawValue>>()?
                                    .map_or(ObjectIn::Absent, ObjectIn::Raw),
                            };
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                req.uid = uid.ok_or_else(|| M::Error::missing_field("uid"))?;
                Ok(req)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Reads a Pod object (or null) in place.
struct PodSeed;

impl<'de> serde::de::DeserializeSeed<'de> for PodSeed {
    type Value = Option<PodView<'de>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        crate::pod::object_or_null(d)
    }
}

/// The same request with the object kept raw: the slow path that turns a
/// pod the fast path could not read into a precise message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRaw<'a> {
    #[serde(borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: RequestRaw<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestRaw<'a> {
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

impl<'a> From<RequestRaw<'a>> for RequestIn<'a> {
    fn from(r: RequestRaw<'a>) -> Self {
        RequestIn {
            uid: r.uid,
            kind: r.kind,
            sub_resource: r.sub_resource,
            operation: r.operation,
            namespace: r.namespace,
            name: r.name,
            dry_run: r.dry_run,
            object: r.object.map_or(ObjectIn::Absent, ObjectIn::Raw),
        }
    }
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
    // Declared (and skipped) so that a body with two `object`s is refused
    // outright rather than answered: serde only reports duplicates of
    // fields it knows.
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
    status: Option<StatusOut<'a>>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
}

/// Reviews one AdmissionReview body against `config`, with the default
/// [`Bounds`]; the shorthand the fuzz targets, benches and tests use.
pub fn review(config: &Config, body: &[u8]) -> Result<Reviewed, ReviewError> {
    review_with(config, &Bounds::default(), body)
}

/// Reviews one AdmissionReview body against `config`: a pod whose patch
/// would pass `bounds` is denied before the patch is built.
pub fn review_with(config: &Config, bounds: &Bounds, body: &[u8]) -> Result<Reviewed, ReviewError> {
    // JSON is UTF-8 throughout, including strings the typed view skips
    // unread; checking once up front also lets the parser skip re-checking.
    let body = std::str::from_utf8(body)
        .map_err(|e| ReviewError::NotJson(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let parsed: ReviewIn = match serde_json::from_str(body) {
        Ok(parsed) => parsed,
        Err(e) => return malformed(config, bounds, body, e),
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
    let (subject, decision) = decide(config, bounds, &request);
    let response = respond(api_version, &subject.uid, &decision);
    Ok(Reviewed {
        subject,
        decision,
        response,
    })
}

/// A parser's message, which may quote the input (serde_json quotes a
/// string it did not expect), cut to a size fit for a response and a log
/// line.
fn clip_message(message: String) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message;
    }
    let mut cut = MAX;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes)", &message[..cut], message.len())
}

fn check_version(v: Option<&str>) -> Result<&'static str, ReviewError> {
    match v {
        Some(API_V1) => Ok(API_V1),
        Some(API_V1BETA1) => Ok(API_V1BETA1),
        Some(other) => Err(ReviewError::Version(names::clip(other))),
        None => Err(ReviewError::NotReview("apiVersion is missing".into())),
    }
}

/// The full view failed: answer with an `Invalid` decision if a uid can be
/// found, else refuse the body.
fn malformed(
    config: &Config,
    bounds: &Bounds,
    body: &str,
    error: serde_json::Error,
) -> Result<Reviewed, ReviewError> {
    if error.is_syntax() || error.is_eof() {
        return Err(ReviewError::NotJson(clip_message(error.to_string())));
    }
    if let Ok(raw) = serde_json::from_str::<ReviewRaw>(body) {
        let api_version = check_version(raw.api_version.as_deref())?;
        let (subject, decision) = decide(config, bounds, &raw.request.into());
        let response = respond(api_version, &subject.uid, &decision);
        return Ok(Reviewed {
            subject,
            decision,
            response,
        });
    }
    let Ok(min) = serde_json::from_str::<UidOnly>(body) else {
        return Err(ReviewError::NotReview(clip_message(error.to_string())));
    };
    let api_version = check_version(min.api_version.as_deref())?;
    let decision = Decision::Invalid(clip_message(format!("malformed AdmissionReview: {error}")));
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

fn decide(config: &Config, bounds: &Bounds, req: &RequestIn<'_>) -> (Subject, Decision) {
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
                serde_json::from_str::<PodView>(text).map_err(|e| e.to_string())
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
    let wanted = match patch::wanted(&selection) {
        Ok(w) => w,
        Err(conflict) => return (subject, Decision::Denied(conflict.to_string())),
    };
    // The bound is checked on an estimate, before any per-container work.
    let (containers, max_index) = patch::targeted(pod, &selection);
    let estimate = wanted.estimate(containers, max_index);
    if let Err(over) = bounds.check(&estimate) {
        return (subject, Decision::Denied(over.to_string()));
    }
    let decision = match patch::build(pod, &selection, &wanted) {
        Ok(Some(p)) => {
            debug_assert!(
                serde_json::to_vec(&p).map_or(0, |v| v.len() as u64) <= estimate.bytes,
                "the estimate is an upper bound"
            );
            Decision::Patched(p)
        }
        Ok(None) => Decision::Unchanged(Skip::AlreadyInjected),
        Err(conflict) => Decision::Denied(conflict.to_string()),
    };
    (subject, decision)
}

fn respond(api_version: &str, uid: &str, decision: &Decision) -> Vec<u8> {
    let mut response = ResponseOut {
        uid,
        allowed: true,
        status: None,
    };
    match decision {
        Decision::Unchanged(_) => {}
        Decision::Patched(p) => return patched_response(api_version, uid, p),
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

/// The allowed-with-patch answer, written directly: the base64 is encoded
/// into the output buffer, not built as a `String` and then scanned again by
/// the JSON string escaper (it never needs escaping).
fn patched_response(api_version: &str, uid: &str, patch: &Patch) -> Vec<u8> {
    use base64::engine::general_purpose::STANDARD;
    let json = serde_json::to_vec(patch).expect("a JSON Patch always serialises");
    let b64_len = base64::encoded_len(json.len(), true).expect("a patch is far below usize::MAX");
    let mut out = Vec::with_capacity(b64_len + uid.len() + 128);
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut out, api_version).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    serde_json::to_writer(&mut out, uid).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"allowed\":true,\"patchType\":\"JSONPatch\",\"patch\":\"");
    let start = out.len();
    out.resize(start + b64_len, 0);
    let written = STANDARD
        .encode_slice(&json, &mut out[start..])
        .expect("the buffer was sized by encoded_len");
    out.truncate(start + written);
    out.extend_from_slice(b"\"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config() -> Config {
        Config::from_yaml("data: {d: {mountPath: /d}}\noutputs: {o: {mountPath: /o}}")
            .expect("valid")
    }

    fn body(api: &str, kind: &str, operation: &str, object: Value) -> Vec<u8> {
        json!({
            "apiVersion": api, "kind": "AdmissionReview",
            "request": {
                "uid": "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "namespace": "ns", "operation": operation, "dryRun": false,
                "object": object, "oldObject": null
            }
        })
        .to_string()
        .into_bytes()
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "main"}]}})
    }

    fn response(r: &Reviewed) -> Value {
        serde_json::from_slice(&r.response).expect("response is JSON")
    }

    #[test]
    fn patch_is_base64_string_with_patch_type() {
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", pod())).expect("answered");
        let out = response(&r);
        assert_eq!(out["apiVersion"], API_V1);
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"],
            "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1"
        );
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let b64 = out["response"]["patch"]
            .as_str()
            .expect("patch is a base64 string, not a byte array");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("valid base64");
        let ops: Value = serde_json::from_slice(&raw).expect("decoded patch is JSON");
        let Decision::Patched(p) = &r.decision else {
            panic!("expected a patch, got {:?}", r.decision)
        };
        assert_eq!(ops, serde_json::to_value(p).expect("patch"));
        assert!(ops.as_array().is_some_and(|a| !a.is_empty()));
        assert_eq!(r.subject.name, "p");
        assert_eq!(r.subject.operation, "CREATE");
    }

    #[test]
    fn object_before_kind_gets_the_same_answer() {
        // The API server sends kind and operation first; any order must work.
        let object = pod().to_string();
        let head = r#""uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"ns","operation":"CREATE""#;
        let first = format!(
            r#"{{"apiVersion":"{API_V1}","kind":"AdmissionReview","request":{{{head},"object":{object}}}}}"#
        );
        let last = format!(
            r#"{{"apiVersion":"{API_V1}","kind":"AdmissionReview","request":{{"object":{object},{head}}}}}"#
        );
        let a = review(&config(), first.as_bytes()).expect("answered");
        let b = review(&config(), last.as_bytes()).expect("answered");
        assert!(
            matches!(a.decision, Decision::Patched(_)),
            "{:?}",
            a.decision
        );
        assert_eq!(a.decision, b.decision);
        assert_eq!(a.response, b.response);
        // A non-Pod object after its kind is never read: garbage there is fine.
        let skipped = first
            .replace(r#""kind":"Pod""#, r#""kind":"Secret""#)
            .replace(&object, r#"{"spec":{"containers":"not a list"}}"#);
        let r = review(&config(), skipped.as_bytes()).expect("answered");
        assert_eq!(r.decision, Decision::Unchanged(Skip::NotPod));
        // A malformed Pod read in the first pass still gets the precise message.
        let broken = first.replace(&object, r#"{"spec":{"containers":"not a list"}}"#);
        let r = review(&config(), broken.as_bytes()).expect("answered");
        match r.decision {
            Decision::Invalid(m) => {
                assert!(m.starts_with("request.object is not a valid Pod"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v1beta1_is_answered_in_kind() {
        let r = review(&config(), &body(API_V1BETA1, "Pod", "CREATE", pod())).expect("answered");
        assert_eq!(response(&r)["apiVersion"], API_V1BETA1);
    }

    #[test]
    fn other_kinds_and_operations_pass_unchanged() {
        for (kind, op, skip) in [
            ("Deployment", "CREATE", Skip::NotPod),
            ("Pod", "UPDATE", Skip::NotCreate),
            ("Pod", "DELETE", Skip::NotCreate),
        ] {
            let r = review(
                &config(),
                &body(
                    API_V1,
                    kind,
                    op,
                    json!({"spec": {"containers": "not a pod"}}),
                ),
            )
            .expect("answered");
            assert_eq!(r.decision, Decision::Unchanged(skip), "{kind} {op}");
            let out = response(&r);
            assert_eq!(
                out["response"],
                json!({"uid": "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1", "allowed": true})
            );
        }
    }

    #[test]
    fn opted_out_pod_is_unchanged() {
        let mut p = pod();
        p["metadata"]["labels"] = json!({"polyaxon.com/persistence-injection": "disabled"});
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered");
        assert_eq!(r.decision, Decision::Unchanged(Skip::OptedOut));
    }

    #[test]
    fn denial_has_status_400_and_message() {
        let mut p = pod();
        p["metadata"]["annotations"] = json!({"polyaxon.com/persistence": "data: [nope]"});
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered");
        let out = response(&r);
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["code"], 400);
        let msg = out["response"]["status"]["message"]
            .as_str()
            .expect("message");
        assert!(
            msg.contains("polyaxon.com/persistence") && msg.contains("data: d; outputs: o"),
            "{msg}"
        );
        assert!(out["response"].get("patch").is_none());
    }

    fn pod_with(containers: usize) -> Value {
        let list: Vec<Value> = (0..containers)
            .map(|i| json!({"name": format!("c-{i}")}))
            .collect();
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": list}})
    }

    fn denial(r: &Reviewed) -> String {
        let out = response(r);
        assert_eq!(out["response"]["allowed"], false, "{out}");
        assert_eq!(out["response"]["status"]["code"], 400, "{out}");
        assert!(out["response"].get("patch").is_none());
        out["response"]["status"]["message"]
            .as_str()
            .expect("message")
            .to_owned()
    }

    #[test]
    fn bounds_are_checked_before_the_patch_is_built() {
        // This config gives each container 2 mounts and 2 env vars.
        let items = Bounds {
            max_patch_bytes: u64::MAX,
            max_injected_items: 10_000,
        };
        let under = review_with(
            &config(),
            &items,
            &body(API_V1, "Pod", "CREATE", pod_with(2_500)),
        )
        .expect("answered");
        match &under.decision {
            Decision::Patched(p) => assert_eq!(p.0.len(), 1 + 1 + 2 * 2_500),
            other => panic!("2,500 × 4 = 10,000 items is within the bound: {other:?}"),
        }
        let over = review_with(
            &config(),
            &items,
            &body(API_V1, "Pod", "CREATE", pod_with(2_501)),
        )
        .expect("answered");
        let msg = denial(&over);
        assert!(
            msg.starts_with("the patch would add 10,004 items (2,501 containers × 4) / about "),
            "{msg}"
        );
        assert!(
            msg.contains(
                "over the limit of 10,000 items (--max-injected-items); target fewer containers"
            ),
            "{msg}"
        );

        // Bytes: the default 1 MiB is reached before 10,000 items here.
        let big =
            review(&config(), &body(API_V1, "Pod", "CREATE", pod_with(5_000))).expect("answered");
        let msg = denial(&big);
        assert!(
            msg.starts_with("the patch would add 20,000 items (5,000 containers × 4) / about "),
            "{msg}"
        );
        assert!(msg.contains("over the limit of 10,000 items (--max-injected-items) and the limit of 1.0 MiB (1,048,576 bytes, --max-patch-bytes)"), "{msg}");
        assert!(matches!(big.decision, Decision::Denied(_)));

        // containers: narrows what is counted.
        let mut narrowed = pod_with(5_000);
        narrowed["metadata"]["annotations"] =
            json!({"polyaxon.com/persistence": "containers: [c-4999]"});
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", narrowed)).expect("answered");
        assert!(
            matches!(r.decision, Decision::Patched(_)),
            "{:?}",
            r.decision
        );
    }

    #[test]
    fn a_re_admitted_pod_gets_the_same_bound_answer() {
        let tight = Bounds {
            max_patch_bytes: u64::MAX,
            max_injected_items: 40,
        };
        let first = review_with(
            &config(),
            &tight,
            &body(API_V1, "Pod", "CREATE", pod_with(10)),
        )
        .expect("answered");
        let Decision::Patched(p) = &first.decision else {
            panic!(
                "10 × 4 = 40 items is within the bound: {:?}",
                first.decision
            )
        };
        let mut patched = pod_with(10);
        json_patch::patch(&mut patched, &p.0).expect("applies");
        let again = review_with(&config(), &tight, &body(API_V1, "Pod", "CREATE", patched))
            .expect("answered");
        assert_eq!(again.decision, Decision::Unchanged(Skip::AlreadyInjected));
    }

    #[test]
    fn parser_messages_are_clipped() {
        let mut p = pod();
        p["metadata"]["labels"] = json!("x".repeat(100_000));
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered");
        match &r.decision {
            Decision::Invalid(m) => {
                assert!(m.starts_with("request.object is not a valid Pod"), "{m}");
                assert!(m.len() < 1200, "{} bytes", m.len());
            }
            other => panic!("{other:?}"),
        }
        let version = format!(
            r#"{{"apiVersion":"{}","request":{{"uid":"u"}}}}"#,
            "v".repeat(100_000)
        );
        let err = review(&config(), version.as_bytes())
            .expect_err("unsupported")
            .to_string();
        assert!(err.len() < 400, "{} bytes", err.len());
    }

    #[test]
    fn malformed_requests_with_a_uid_get_an_answer() {
        let cases = [
            (
                json!({"metadata": {"name": "p"}, "spec": {"containers": "x"}}),
                "request.object is not a valid Pod",
            ),
            (Value::Null, "request.object is missing"),
        ];
        for (object, want) in cases {
            let r = review(&config(), &body(API_V1, "Pod", "CREATE", object)).expect("answered");
            match &r.decision {
                Decision::Invalid(m) => assert!(m.contains(want), "{m}"),
                other => panic!("{want}: got {other:?}"),
            }
            assert_eq!(response(&r)["response"]["allowed"], false);
        }
        // A request whose shape is wrong (operation is a number) still echoes the uid.
        let wrong = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":5}}"#;
        let r = review(&config(), wrong).expect("answered");
        assert!(
            matches!(r.decision, Decision::Invalid(_)),
            "{:?}",
            r.decision
        );
        assert_eq!(response(&r)["response"]["uid"], "u1");
    }

    #[test]
    fn unanswerable_bodies_are_errors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "not JSON"),
            (b"\xff\xfe", "not JSON"),
            (b"{\"apiVersion\":", "not JSON"),
            (b"[]", "not an AdmissionReview"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
            (br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u"}}"#, "unsupported AdmissionReview apiVersion"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#, "not an AdmissionReview"),
        ];
        for (input, want) in cases {
            let err = review(&config(), input).expect_err(want).to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }
}

//! The AdmissionReview wire codec: the borrowed, typed view of the request
//! (only the fields the decision needs, read in one pass) and the writer of
//! the response. It decides nothing: [`super::decision`] does.
//!
//! The response echoes the request's uid and apiVersion and carries the
//! patch as base64 (the wire form the API server expects, pinned by tests
//! against real captures; see kube-rs/kube#1781 for how a typed `Vec<u8>`
//! gets this wrong).

use std::borrow::Cow;

use crate::patch::PatchJson;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Decision, Notes, ReviewError};
use crate::pod::{once, Keep, PodSeed, PodView, Reading};
use crate::text::JsonStr;

/// `admission.k8s.io/v1`, what current API servers send.
pub const API_V1: &str = "admission.k8s.io/v1";
/// `admission.k8s.io/v1beta1`, answered in kind for old registrations.
pub const API_V1BETA1: &str = "admission.k8s.io/v1beta1";

pub(super) struct ReviewIn<'a> {
    pub(super) api_version: Option<Cow<'a, str>>,
    pub(super) kind: Option<Cow<'a, str>>,
    pub(super) request: Option<RequestIn<'a>>,
}

impl<'a> ReviewIn<'a> {
    /// Reads `body`, keeping of the pod what `keep` says.
    pub(super) fn read(body: &'a str, keep: Keep<'_>) -> Result<ReviewIn<'a>, serde_json::Error> {
        use serde::de::DeserializeSeed as _;
        let mut de = serde_json::Deserializer::from_str(body);
        let review = ReviewSeed(Reading { keep, text: body }).deserialize(&mut de)?;
        de.end()?;
        Ok(review)
    }
}

/// The review, as serde would derive it for `ReviewIn` (a map, or its
/// fields in order as a list), with the pod read by [`PodSeed`].
struct ReviewSeed<'k, 'de>(Reading<'k, 'de>);

impl<'de> serde::de::DeserializeSeed<'de> for ReviewSeed<'_, 'de> {
    type Value = ReviewIn<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("ReviewIn", &["apiVersion", "kind", "request"], self)
    }
}

impl<'de> serde::de::Visitor<'de> for ReviewSeed<'_, 'de> {
    type Value = ReviewIn<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("struct ReviewIn")
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let api_version = seq.next_element::<Option<Cow<'de, str>>>()?.flatten();
        let kind = seq.next_element::<Option<Cow<'de, str>>>()?.flatten();
        let request = seq.next_element_seed(OptionalRequest(self.0))?.flatten();
        Ok(ReviewIn {
            api_version,
            kind,
            request,
        })
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut api_version, mut kind, mut request) = (None, None, None);
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            match &*key {
                "apiVersion" => once(&mut api_version, "apiVersion", optional_str(&mut map)?)?,
                "kind" => once(&mut kind, "kind", optional_str(&mut map)?)?,
                "request" => once(
                    &mut request,
                    "request",
                    map.next_value_seed(OptionalRequest(self.0))?,
                )?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ReviewIn {
            api_version: api_version.flatten(),
            kind: kind.flatten(),
            request: request.flatten(),
        })
    }
}

/// `request` or null.
struct OptionalRequest<'k, 'de>(Reading<'k, 'de>);

impl<'de> serde::de::DeserializeSeed<'de> for OptionalRequest<'_, 'de> {
    type Value = Option<RequestIn<'de>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for OptionalRequest<'_, 'de> {
    type Value = Option<RequestIn<'de>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("option")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RequestVisitor(self.0)).map(Some)
    }
}

/// A string field's value or null, borrowed from the body where it can be.
fn optional_str<'de, M: serde::de::MapAccess<'de>>(
    map: &mut M,
) -> Result<Option<Cow<'de, str>>, M::Error> {
    Ok(map.next_value::<Option<JsonStr<'de>>>()?.map(|s| s.0))
}

/// A string field's value, borrowed from the body where it can be.
fn string<'de, M: serde::de::MapAccess<'de>>(map: &mut M) -> Result<Cow<'de, str>, M::Error> {
    Ok(map.next_value::<JsonStr<'de>>()?.0)
}

/// The request, read in one pass. The API server sends `kind`, `subResource`
/// and `operation` before `object`, so a Pod CREATE's object is read straight
/// into a [`PodView`] and anything else is skipped unread. When `object`
/// comes first it is kept raw and read once the rest is known.
pub(super) struct RequestIn<'a> {
    pub(super) uid: Cow<'a, str>,
    pub(super) kind: Option<Gvk<'a>>,
    pub(super) sub_resource: Option<Cow<'a, str>>,
    pub(super) operation: Option<Cow<'a, str>>,
    pub(super) namespace: Option<Cow<'a, str>>,
    pub(super) name: Option<Cow<'a, str>>,
    pub(super) dry_run: Option<bool>,
    pub(super) object: ObjectIn<'a>,
}

// One per request, on the stack: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum ObjectIn<'a> {
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
    pub(super) fn is_pod(&self) -> Option<bool> {
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

/// The request's map, with the pod read by [`PodSeed`].
struct RequestVisitor<'k, 'de>(Reading<'k, 'de>);

impl<'de> serde::de::Visitor<'de> for RequestVisitor<'_, 'de> {
    type Value = RequestIn<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an AdmissionRequest object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        use serde::de::Error as _;
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
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            match &*key {
                "uid" => once(&mut uid, "uid", string(&mut map)?)?,
                "kind" => once(&mut req.kind, "kind", map.next_value()?)?,
                "subResource" => once(&mut req.sub_resource, "subResource", string(&mut map)?)?,
                "operation" => once(&mut req.operation, "operation", string(&mut map)?)?,
                "namespace" => once(&mut req.namespace, "namespace", string(&mut map)?)?,
                "name" => once(&mut req.name, "name", string(&mut map)?)?,
                "dryRun" => once(&mut req.dry_run, "dryRun", map.next_value()?)?,
                "object" => {
                    if std::mem::replace(&mut seen_object, true) {
                        return Err(M::Error::duplicate_field("object"));
                    }
                    req.object = match req.is_pod_create() {
                        Some(true) => map
                            .next_value_seed(PodSeed(self.0))?
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

/// The same request with the object kept raw: the slow path that turns a
/// pod the fast path could not read into a precise message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReviewRaw<'a> {
    #[serde(borrow, default)]
    pub(super) api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) request: RequestRaw<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestRaw<'a> {
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
pub(super) struct Gvk<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
}

/// The least a body must have to be answered: used when the full view fails,
/// so a malformed request still gets an AdmissionReview naming the problem.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UidOnly<'a> {
    #[serde(borrow, default)]
    pub(super) api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) request: UidOnlyRequest<'a>,
}

#[derive(Deserialize)]
pub(super) struct UidOnlyRequest<'a> {
    #[serde(borrow)]
    pub(super) uid: Cow<'a, str>,
    // Declared (and skipped) so that a body with two `object`s is refused
    // outright rather than answered: serde only reports duplicates of
    // fields it knows.
    #[serde(default, rename = "object")]
    pub(super) _object: Option<IgnoredAny>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
pub(super) struct StatusOut<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<DetailsOut<'a>>,
}

/// `status.details` of a denial: our stable reason and the field concerned
/// (SPEC §8), as a Kubernetes `StatusCause`.
#[derive(Serialize)]
pub(super) struct DetailsOut<'a> {
    causes: [CauseOut<'a>; 1],
}

#[derive(Serialize)]
pub(super) struct CauseOut<'a> {
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl<'a> StatusOut<'a> {
    fn bad_request(message: &'a str) -> StatusOut<'a> {
        StatusOut {
            status: "Failure",
            code: 400,
            reason: "BadRequest",
            message,
            details: None,
        }
    }
}

/// A parser's message, which may quote the input (serde_json quotes a
/// string it did not expect), cut to a size fit for a response and a log
/// line.
pub(super) fn clip_message(message: String) -> String {
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

pub(super) fn check_version(v: Option<&str>) -> Result<&'static str, ReviewError> {
    match v {
        Some(API_V1) => Ok(API_V1),
        Some(API_V1BETA1) => Ok(API_V1BETA1),
        Some(other) => Err(ReviewError::Version(crate::text::clip(other))),
        None => Err(ReviewError::NotReview {
            message: "apiVersion is missing".into(),
            source: None,
        }),
    }
}

pub(super) fn respond(
    api_version: &str,
    uid: &str,
    decision: &mut Decision,
    notes: &Notes,
) -> Bytes {
    let denied;
    let mut response = ResponseOut {
        uid,
        allowed: true,
        status: None,
        warnings: &notes.warnings,
    };
    match decision {
        Decision::Unchanged(_) => {}
        Decision::Patched(p) => return patched_response(api_version, uid, p, notes),
        Decision::Denied(denial) => {
            denied = denial.to_string();
            response.allowed = false;
            let mut status = StatusOut::bad_request(&denied);
            status.details = Some(DetailsOut {
                causes: [CauseOut {
                    reason: denial.reason().as_str(),
                    message: &denied,
                    field: denial.field(),
                }],
            });
            response.status = Some(status);
        }
        Decision::Invalid(message) => {
            response.allowed = false;
            response.status = Some(StatusOut::bad_request(message));
        }
    }
    serde_json::to_vec(&ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response,
    })
    .expect("a response of strings always serialises")
    .into()
}

/// The room a patch's buffer keeps for its response besides the base64 of
/// the patch: the envelope, the uid (escaped at worst) and the audit
/// annotations (the warnings, rare, may still grow it).
pub(super) fn patched_room(uid: &str, audit: &[(&'static str, String)]) -> usize {
    let audit: usize = audit.iter().map(|(k, v)| k.len() + 6 * v.len() + 8).sum();
    256 + 6 * uid.len() + audit
}

/// The allowed-with-patch answer, written directly and made of the
/// patch's own buffer: the base64 is encoded in place
/// ([`PatchJson::into_response`]), never held beside the patch's text.
fn patched_response(api_version: &str, uid: &str, patch: &mut PatchJson, notes: &Notes) -> Bytes {
    let mut head = Vec::with_capacity(uid.len() + 160);
    head.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut head, api_version).expect("writing to a Vec cannot fail");
    head.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    serde_json::to_writer(&mut head, uid).expect("writing to a Vec cannot fail");
    head.extend_from_slice(b",\"allowed\":true,\"patchType\":\"JSONPatch\",\"patch\":\"");
    patch.into_response(&head, |out| {
        out.push(b'"');
        if !notes.audit.is_empty() {
            out.extend_from_slice(b",\"auditAnnotations\":{");
            for (i, (key, value)) in notes.audit.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
                out.push(b':');
                serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
            }
            out.push(b'}');
        }
        if !notes.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            serde_json::to_writer(&mut *out, &notes.warnings)
                .expect("writing to a Vec cannot fail");
        }
        out.extend_from_slice(b"}}");
    })
}

//! AdmissionReview bytes in, AdmissionReview bytes out: the one entry point
//! shared by the HTTPS server and the `mutate` command. Pure.
//!
//! Two rooms: `codec` reads the request into a borrowed, typed view and
//! writes the response; `decision` decides from that view; `outcome`
//! names why a pod was skipped or refused. This module
//! only wires them together, and answers a malformed request with the most
//! precise message it can find.

use crate::bounds::Bounds;
use crate::config::Config;

mod codec;
mod decision;
mod outcome;

use codec::{check_version, clip_message, respond, ReviewIn, ReviewRaw, UidOnly};
use decision::decide;

pub use codec::{API_V1, API_V1BETA1};
pub use decision::{Decision, Skip};
pub use outcome::{Denial, DenialCause, Outcome, Reason};

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
    /// The warnings and audit annotations the response carries.
    pub notes: Notes,
    /// The AdmissionReview response body, ready to send. A patched
    /// decision's patch shares its buffer (see [`crate::patch::PatchJson`]).
    pub response: bytes::Bytes,
}

/// What an answer tells people besides the decision (SPEC §8). Both empty
/// on the ordinary path but for the audit annotations of a patched pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// `response.warnings`: one short line each, naming the container and
    /// the variable or store, never a value.
    pub warnings: Vec<String>,
    /// `response.auditAnnotations` of a patched pod: the selected stores
    /// and the outputs path.
    pub audit: Vec<(&'static str, String)>,
}

/// How a decision was reached, for `explain`: recorded by the same
/// decision `serve` and `mutate` make, when asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The selected data stores: name, path.
    pub data: Vec<(String, String)>,
    /// No `data` in the selection: every data store of the namespace.
    pub data_by_default: bool,
    /// The outputs store, if one was selected.
    pub outputs: Option<OutputsTrace>,
    /// Every container and init container, and whether it is targeted.
    pub targeted: Vec<(String, bool)>,
    /// What each targeted container gets mounted: path, volume and options.
    pub mounts: Vec<String>,
    /// The env vars each targeted container gets.
    pub env: Vec<String>,
    /// Containers that keep their own SDK variables.
    pub kept: Vec<crate::patch::Kept>,
}

/// The outputs part of a [`Trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputsTrace {
    /// The store's name.
    pub store: String,
    /// `<mountPath or bucket>/<sub-path>`.
    pub path: String,
    /// The run's sub-path.
    pub sub_path: String,
    /// Why this store.
    pub choice: crate::selection::OutputsChoice,
    /// Which rule gave the sub-path, in words.
    pub rule: String,
    /// For a kept recorded path that today's rules would not give: theirs.
    pub derived: Option<String>,
}

impl Trace {
    fn record_selection(&mut self, selection: &crate::selection::Selection<'_>) {
        self.data = selection
            .data
            .iter()
            .map(|s| (s.name().to_owned(), s.path().to_owned()))
            .collect();
        self.data_by_default = selection.data_by_default;
        self.outputs = selection.outputs.as_ref().map(|o| OutputsTrace {
            store: o.store.name().to_owned(),
            path: o.path.clone(),
            sub_path: o.sub_path.clone(),
            choice: o.choice,
            rule: o.rule.to_string(),
            derived: o.derived.clone(),
        });
    }
}

/// A body that cannot be answered with an AdmissionReview at all (there is no
/// uid to echo). The server answers these with HTTP 400. The message is
/// clipped for logs and answers; the parser's own error, when one said so,
/// is kept whole as the source.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON.
    #[error("the body is not JSON: {message}")]
    NotJson {
        /// What is wrong, clipped.
        message: String,
        /// The parser's error.
        #[source]
        source: Option<ParseError>,
    },
    /// JSON, but not an AdmissionReview with a request uid.
    #[error("the body is not an AdmissionReview: {message}")]
    NotReview {
        /// What is wrong, clipped.
        message: String,
        /// The parser's error, when the shape was judged by one.
        #[source]
        source: Option<ParseError>,
    },
    /// An AdmissionReview of a version this webhook does not speak.
    #[error("unsupported AdmissionReview apiVersion {0:?} (expected {API_V1} or {API_V1BETA1})")]
    Version(String),
}

/// The error a parser gave for a body, kept as the source of a
/// [`ReviewError`].
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::str::Utf8Error),
    /// serde_json refused it.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl ReviewError {
    fn not_json(message: String, source: impl Into<ParseError>) -> Self {
        ReviewError::NotJson {
            message,
            source: Some(source.into()),
        }
    }

    fn not_review(message: String, source: Option<ParseError>) -> Self {
        ReviewError::NotReview { message, source }
    }
}

/// Reviews one AdmissionReview body against `config`, with the default
/// [`Bounds`]; the shorthand the fuzz targets, benches and tests use.
pub fn review(config: &Config, body: &[u8]) -> Result<Reviewed, ReviewError> {
    review_with(config, &Bounds::default(), body)
}

/// Reviews one AdmissionReview body against `config`: a pod whose patch
/// would pass `bounds` is denied before the patch is built.
pub fn review_with(config: &Config, bounds: &Bounds, body: &[u8]) -> Result<Reviewed, ReviewError> {
    review_traced(config, bounds, body, None)
}

/// [`review_with`], recording how the decision was reached into `trace`
/// (for `explain`): the same decision, no second implementation.
pub fn review_traced(
    config: &Config,
    bounds: &Bounds,
    body: &[u8],
    trace: Option<&mut Trace>,
) -> Result<Reviewed, ReviewError> {
    // JSON is UTF-8 throughout, including strings the typed view skips
    // unread; checking once up front also lets the parser skip re-checking.
    let body = std::str::from_utf8(body).map_err(|e| {
        ReviewError::not_json(format!("invalid UTF-8 at byte {}", e.valid_up_to()), e)
    })?;
    let keep = crate::pod::Keep::Ours(config.relevant());
    let parsed = match ReviewIn::read(body, keep) {
        Ok(parsed) => parsed,
        Err(e) => return malformed(config, bounds, body, e, trace),
    };
    let api_version = check_version(parsed.api_version.as_deref())?;
    if let Some(kind) = parsed.kind.as_deref() {
        if kind != "AdmissionReview" {
            return Err(ReviewError::not_review(
                format!("kind is {kind:?}, expected \"AdmissionReview\""),
                None,
            ));
        }
    }
    let Some(request) = parsed.request else {
        return Err(ReviewError::not_review("it has no request".into(), None));
    };
    let mut notes = Notes::default();
    let (subject, mut decision) = decide(config, bounds, &request, &mut notes, trace);
    let response = respond(api_version, &subject.uid, &mut decision, &notes);
    Ok(Reviewed {
        subject,
        decision,
        notes,
        response,
    })
}

/// The full view failed: answer with an `Invalid` decision if a uid can be
/// found, else refuse the body.
fn malformed(
    config: &Config,
    bounds: &Bounds,
    body: &str,
    error: serde_json::Error,
    trace: Option<&mut Trace>,
) -> Result<Reviewed, ReviewError> {
    if error.is_syntax() || error.is_eof() {
        return Err(ReviewError::not_json(
            clip_message(error.to_string()),
            error,
        ));
    }
    if let Ok(raw) = serde_json::from_str::<ReviewRaw>(body) {
        let api_version = check_version(raw.api_version.as_deref())?;
        let mut notes = Notes::default();
        let (subject, mut decision) =
            decide(config, bounds, &raw.request.into(), &mut notes, trace);
        let response = respond(api_version, &subject.uid, &mut decision, &notes);
        return Ok(Reviewed {
            subject,
            decision,
            notes,
            response,
        });
    }
    let Ok(min) = serde_json::from_str::<UidOnly>(body) else {
        return Err(ReviewError::not_review(
            clip_message(error.to_string()),
            Some(error.into()),
        ));
    };
    let api_version = check_version(min.api_version.as_deref())?;
    let mut decision =
        Decision::Invalid(clip_message(format!("malformed AdmissionReview: {error}")));
    let notes = Notes::default();
    let response = respond(api_version, &min.request.uid, &mut decision, &notes);
    Ok(Reviewed {
        subject: Subject {
            uid: min.request.uid.into_owned(),
            ..Subject::default()
        },
        decision,
        notes,
        response,
    })
}

#[cfg(test)]
mod tests;

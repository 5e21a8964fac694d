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

#[cfg(test)]
mod tests;

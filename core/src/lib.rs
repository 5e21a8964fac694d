//! The pure core of persistence-webhook: the persistence config, the pod's
//! selection, the patch and the AdmissionReview decision (SPEC.md §2-§5).
//!
//! Nothing here does I/O, reads a clock or draws a random number, and this
//! crate depends on nothing that could: the HTTPS server and the offline
//! `mutate` command (the `persistence-webhook` crate) both call
//! [`review::review_with`](fn@review::review_with), so what CI dry-runs is
//! what the cluster gets.
//!
//! The rooms: [`vocabulary`] holds every name the SPEC fixes, [`pod`] is the
//! borrowed view of the pod, [`config`] the operator's stores, [`selection`]
//! which stores and sub-path a pod gets, [`patch`] the JSON Patch, [`bounds`]
//! the limits on it, [`review`](mod@review) bytes in and bytes out with
//! typed outcomes, [`policy`] the same decision compiled into admission
//! policies for pods without a selection; [`names`] holds the name rules and [`k8s`] the Kubernetes
//! object types and builders.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bounds;
pub mod config;
pub mod k8s;
pub mod names;
pub mod patch;
pub mod pod;
pub mod policy;
pub mod review;
pub mod selection;
pub mod text;
pub mod vocabulary;

pub use bounds::Bounds;
pub use config::{Config, ConfigError};
pub use review::{review, review_with, Decision, ParseError, ReviewError, Reviewed};

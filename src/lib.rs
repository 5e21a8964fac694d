//! persistence-webhook: a Kubernetes mutating admission webhook that gives
//! each pod the data and outputs stores it selects (SPEC.md).
//!
//! This crate is the edges: the command line, the offline `mutate` command,
//! certificates, logs and the HTTPS server. The decision itself is the pure
//! `persistence-webhook-core` crate, re-exported here; [`review::review_with`]
//! is the one entry point, called with the same [`Bounds`] by both the HTTPS
//! server and `mutate`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use persistence_webhook_core::{
    bounds, config, k8s, names, patch, pod, review, selection, vocabulary,
};

pub mod certs;
pub mod cli;
pub mod cluster;
pub mod explain;
pub mod file;
pub mod flags;
pub mod logs;
pub mod mutate;
pub mod offline;
pub mod policy;
pub mod serve;
pub mod server;
pub mod test;

pub use bounds::Bounds;
pub use config::{Config, ConfigError};
pub use review::{review_with, Decision, ReviewError, Reviewed};

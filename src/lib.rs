//! persistence-webhook: a Kubernetes mutating admission webhook that gives
//! each pod the data and outputs stores it selects (SPEC.md).
//!
//! The decision is pure and lives in [`config`], [`selection`], [`patch`],
//! [`bounds`] and [`review`]; [`review::review_with`] is the one entry point,
//! called with the same [`Bounds`] by both the HTTPS server and the offline
//! `mutate` command ([`review::review`] is its default-bounds shorthand).

pub mod bounds;
pub mod certs;
pub mod cli;
pub mod config;
pub mod k8s;
pub mod logs;
pub mod mutate;
pub mod names;
pub mod patch;
pub mod pod;
pub mod review;
pub mod selection;
pub mod server;

pub use bounds::Bounds;
pub use config::{Config, ConfigError};
pub use review::{review, review_with, Decision, ReviewError, Reviewed};

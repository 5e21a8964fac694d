//! `persistence-webhook policy`: the config compiled into a
//! MutatingAdmissionPolicy, a ValidatingAdmissionPolicy and their bindings
//! (SPEC §10), printed as one YAML stream for `kubectl apply -f -`. The
//! compiling is the core's (`persistence_webhook_core::policy`); this file
//! reads the config and prints.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::offline::io::load_config;
use crate::offline::manifests;
use persistence_webhook_core::policy::{self, Options, PolicyError};

/// Flags of `policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The persistence config (YAML, with or without the top-level `persistence:` key).
    #[arg(long, value_name = "FILE", env = "PERSISTENCE_WEBHOOK_CONFIG")]
    pub config: PathBuf,

    /// The namespace the webhook is installed in: as the webhook
    /// registration does, the policies leave its pods alone.
    #[arg(long, value_name = "NS", default_value = "persistence-webhook")]
    pub webhook_namespace: String,

    /// The name of the policies and of their bindings.
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub name: String,

    /// For a hybrid install: leave to the webhook the pods its narrowed
    /// registration admits (those with the selection annotation, and those
    /// whose outputs sub-path may need the admission uid), so that every
    /// pod takes exactly one path.
    #[arg(long)]
    pub hybrid: bool,
}

/// What `policy` ends with.
#[derive(Debug)]
pub enum Compiled {
    /// The YAML stream to print.
    Objects(String),
    /// The config holds what the policies cannot express (exit 1).
    Refused(PolicyError),
}

/// Runs `policy`. Errors are usage or config errors (exit 2).
pub fn run(args: &PolicyArgs) -> Result<Compiled> {
    let config = load_config(&args.config, "--config")?;
    let options = Options {
        webhook_namespace: args.webhook_namespace.clone(),
        name: args.name.clone(),
        hybrid: args.hybrid,
    };
    Ok(match policy::generate(&config, &options) {
        Ok(objects) => Compiled::Objects(manifests::write(&objects)),
        Err(e) => Compiled::Refused(e),
    })
}

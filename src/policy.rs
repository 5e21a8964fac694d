//! `persistence-webhook policy`: the config compiled into a
//! MutatingAdmissionPolicy, a ValidatingAdmissionPolicy and their bindings
//! (SPEC §10), printed as one YAML stream for `kubectl apply -f -`. The
//! compiling is the core's (`persistence_webhook_core::policy`); this file
//! reads the config and prints.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::config::Config;
use crate::manifests;
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
    // Read here rather than through `mutate`, which names the command line.
    let path = &args.config;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --config {}", path.display()))?;
    let config =
        Config::from_yaml(&text).map_err(|e| anyhow!("--config {}: {e}", path.display()))?;
    let options = Options {
        webhook_namespace: args.webhook_namespace.clone(),
        name: args.name.clone(),
    };
    Ok(match policy::generate(&config, &options) {
        Ok(objects) => Compiled::Objects(manifests::write(&objects)),
        Err(e) => Compiled::Refused(e),
    })
}

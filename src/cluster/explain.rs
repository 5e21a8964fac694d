//! Live `explain` (SPEC §8): `--pod NAMESPACE/NAME` read through the
//! kubeconfig. It reads the pod, its namespace and the
//! MutatingWebhookConfiguration (`--webhook-name`), without `--config` the
//! webhook's Deployment and ConfigMap too, nothing else, and writes
//! nothing.
//!
//! A mutated pod (it carries `polyaxon.com/persistence-injected`) is told
//! by what it got, and re-reviewed with today's config: `already-injected`
//! means today's config gives the same. A pod that was not mutated is told
//! why, in the order the API server decides: its namespace is not selected
//! (the webhook was never called), it opted out, it was created before the
//! webhook was registered, the configuration's rules or selectors exclude
//! it (or there is no configuration), one of its `matchConditions` is
//! false for the pod (evaluated offline by
//! [`crate::cluster::registration::match_conditions`], which names it),
//! else the webhook was called and the pod still has nothing; what the
//! registration says is read by [`crate::cluster::registration`], as
//! `check` reads it. Either way the offline account of re-reviewing the
//! pod ([`crate::offline::account`]) says what the webhook would do
//! with it now. The verdict ([`judge`]) is pure; [`explain`] only reads.
//!
//! Today's config is `--config` when given, else the installed one: the
//! ConfigMap the webhook's Deployment mounts (`installed`), located and
//! parsed by `check`'s `config_map` room.

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::offline::account::Account;

pub mod additions;
mod installed;
mod read;
mod rereview;
pub mod route;
mod text;
mod verdict;

pub use rereview::rereview;
pub use text::text;
pub use verdict::{judge, Difference, Field, Got, Live, Objects, Received, Verdict};

/// How long each read may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The flags only a live pod needs: which webhook to look at, and how to
/// reach the API server. Flattened into `explain`'s.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// For a live pod: the MutatingWebhookConfiguration to look at, and
    /// (without --config) the Deployment whose mounted config is read.
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub webhook_name: String,

    /// For a live pod without --config: the namespace of the webhook's
    /// Deployment and ConfigMap.
    #[arg(long, value_name = "NS", default_value = "persistence-webhook")]
    pub webhook_namespace: String,

    /// For a live pod: the name of the admission policy and its binding of
    /// a hybrid (or policy) install, to say which path the pod took.
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub policy_name: String,

    /// How to reach the API server for a live pod.
    #[command(flatten)]
    pub cluster: super::ClusterArgs,
}

/// A live pod explained: the verdict, the account of re-reviewing it with
/// today's config, and where that config came from.
#[derive(Debug, Clone)]
pub struct Explained {
    /// What the live pod says.
    pub live: Live,
    /// What the webhook would do with it now.
    pub today: Account,
    /// Where today's config came from.
    pub source: ConfigSource,
}

impl Explained {
    /// `{"live": ..., "account": ..., "config": ...}`, as `--output json`
    /// prints it.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "live": self.live,
            "account": self.today,
            "config": self.source,
        })
    }

    /// The live part in plain words, then the account of today's review.
    pub fn text(&self) -> String {
        text(&self.live, &self.today, &self.source)
    }
}

/// Where today's config came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum ConfigSource {
    /// `--config FILE`.
    File {
        /// The path as given.
        path: String,
    },
    /// The ConfigMap the webhook's Deployment mounts.
    Installed {
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// `namespace/name` of the ConfigMap.
        #[serde(rename = "configMap")]
        config_map: String,
        /// Its key.
        key: String,
    },
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File { path } => write!(f, "--config {path}"),
            ConfigSource::Installed {
                deployment,
                config_map,
                key,
            } => write!(
                f,
                "ConfigMap {config_map}, key {key}, mounted by Deployment {deployment}"
            ),
        }
    }
}

/// `NAMESPACE/NAME` when `pod` has that form (two non-empty parts without
/// further `/`), for `--pod` values that name no file.
pub fn live_name(pod: &str) -> Option<(&str, &str)> {
    let (ns, name) = pod.split_once('/')?;
    let ok = crate::names::is_dns1123_label(ns) && crate::names::is_dns1123_subdomain(name);
    ok.then_some((ns, name))
}

/// Reads the live pod `namespace/name`, its namespace and the webhook
/// configuration, and explains it against `file` (`--config`, read by the
/// caller before the cluster, so a bad one fails fast), or without it
/// against the installed config. Errors (no cluster, not found,
/// forbidden, no installed config) name what was read. `serve_parser`
/// reads the Deployment's `serve` args (`crate::serve::flags_in`).
pub async fn explain(
    args: &LiveArgs,
    namespace: &str,
    name: &str,
    file: Option<(Config, ConfigSource)>,
    bounds: &crate::Bounds,
    uid: &str,
    serve_parser: crate::cluster::check::ServeParser,
) -> Result<Explained> {
    let client = super::client(&args.cluster, TIMEOUT)
        .await
        .with_context(|| format!("cannot reach the API server to read pod {namespace}/{name}"))?;
    let (pod, labels, configuration) =
        read::read(&client, &args.webhook_name, namespace, name).await?;
    let policy = read::policy(&client, &args.policy_name).await;
    let (config, source) = match file {
        Some(file) => file,
        None => {
            installed::load(
                &client,
                &args.webhook_namespace,
                &args.webhook_name,
                serve_parser,
            )
            .await?
        }
    };
    let (today, same_today) = rereview(&config, bounds, &pod, namespace, uid)
        .with_context(|| format!("re-reviewing pod {namespace}/{name}"))?;
    let live = judge(
        &Objects {
            pod: &pod,
            namespace_labels: &labels,
            configuration: configuration.as_ref(),
            same_today,
            policy,
        },
        &args.webhook_name,
        &today,
    );
    Ok(Explained {
        live,
        today,
        source,
    })
}

#[cfg(test)]
mod tests;

//! `persistence-webhook explain`: the decision `serve` and `mutate` make,
//! told in plain words (SPEC §8). The account is recorded by the same
//! review ([`crate::review::review_traced`]) and built by
//! [`crate::offline::account`]; this command only reads the input (a pod
//! file or a review) and writes the account as text or JSON. A live pod
//! (`--pod NAMESPACE/NAME`) is read and judged by
//! [`crate::cluster::explain`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cluster::explain::{live_name, ConfigSource, LiveArgs};
use crate::flags::{BoundsArgs, DEFAULT_UID};
use crate::offline::account::{self, account, Account};
use crate::offline::io::{load_config, parse_review, pretty, read};
use crate::offline::manifests;

/// Flags of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The persistence config (YAML, with or without the top-level
    /// `persistence:` key): the one the decision is explained against.
    /// Required for a pod file or a review (offline, no cluster is read).
    /// For a live pod it defaults to the installed config: the ConfigMap
    /// the webhook's Deployment (--webhook-namespace, --webhook-name, the
    /// names `check` uses) mounts at the path of its `serve --config`.
    #[arg(long, value_name = "FILE", env = "PERSISTENCE_WEBHOOK_CONFIG")]
    pub config: Option<PathBuf>,

    /// A pod manifest, YAML or JSON (`-` reads stdin); or, when no such file
    /// exists, `NAMESPACE/NAME` of a live pod, read through the kubeconfig
    /// (with its namespace and the webhook configuration) to say what it
    /// got or why it got nothing, and what today's config would do.
    #[arg(long, short = 'f', value_name = "FILE|NAMESPACE/NAME")]
    pub pod: Option<String>,

    /// An AdmissionReview request, JSON or YAML (`-` reads stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "pod")]
    pub review: Option<PathBuf>,

    /// Namespace for a pod file whose manifest has none (default: `default`).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,

    /// Admission uid for a pod file; a generateName pod's outputs sub-path
    /// ends with it.
    #[arg(long, value_name = "UID", default_value = DEFAULT_UID)]
    pub uid: String,

    /// Plain words, or the same account as JSON for tools.
    #[arg(long, value_enum, default_value_t = ExplainOutput::Text)]
    pub output: ExplainOutput,

    /// For a live pod: which webhook to look at, and how to reach the API
    /// server.
    #[command(flatten)]
    pub live: LiveArgs,

    /// The bounds on one review, as `serve` applies them.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// What `explain` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainOutput {
    /// Plain words.
    Text,
    /// The same account as JSON.
    Json,
}

/// Runs `explain` on a pod file, an AdmissionReview or a live pod: the
/// account, as text or JSON. Errors are usage, input, config or cluster
/// errors (exit 2).
pub async fn run(args: &ExplainArgs) -> Result<String> {
    if let Some(pod) = &args.pod {
        if pod != "-" && !Path::new(pod).exists() {
            if let Some((namespace, name)) = live_name(pod) {
                if let Some(flag) = args.namespace.as_deref().filter(|n| *n != namespace) {
                    bail!("--pod {pod} is in namespace {namespace}, not --namespace {flag}");
                }
                return live(args, namespace, name).await;
            }
        }
    }
    offline(args)
}

/// A live pod, against `--config` or the installed config.
async fn live(args: &ExplainArgs, namespace: &str, name: &str) -> Result<String> {
    // A file is read before the cluster: a bad one fails fast.
    let file = match &args.config {
        Some(path) => Some((
            load_config(path, "--config")?,
            ConfigSource::File {
                path: path.display().to_string(),
            },
        )),
        None => None,
    };
    let explained = crate::cluster::explain::explain(
        &args.live,
        namespace,
        name,
        file,
        &args.bounds.into(),
        &args.uid,
        crate::serve::flags_in,
    )
    .await?;
    Ok(match args.output {
        ExplainOutput::Text => explained.text(),
        ExplainOutput::Json => pretty(&explained.json())?,
    })
}

/// A pod file or a review: no cluster is read.
fn offline(args: &ExplainArgs) -> Result<String> {
    // Offline: no cluster is read, so there is no installed config to
    // fall back on.
    let Some(config) = &args.config else {
        bail!(
            "--config FILE is required to explain a pod file or a review (offline, no cluster is read); only a live pod, --pod NAMESPACE/NAME, is explained against the installed config without it"
        );
    };
    let config = load_config(config, "--config")?;
    let body = match (&args.pod, &args.review) {
        (Some(pod), _) => {
            let path = Path::new(pod);
            let text = read(path).with_context(|| {
                format!("cannot read --pod {pod} (a file, `-`, or NAMESPACE/NAME of a live pod)")
            })?;
            let docs = manifests::parse(&text).with_context(|| format!("--pod {pod}"))?;
            let Ok([object]) = <[Value; 1]>::try_from(docs) else {
                bail!("--pod {pod}: explain takes one Pod (use `mutate` or `test` for a stream)");
            };
            if let Some(kind) = object["kind"].as_str().filter(|k| *k != "Pod") {
                bail!(
                    "--pod {pod}: kind {kind}, not a Pod (--review takes an AdmissionReview; `mutate` and `test` take workloads)"
                );
            }
            manifests::require_mapping(&object).with_context(|| format!("--pod {pod}"))?;
            let namespace =
                crate::offline::dry_run::namespace_of(&object, args.namespace.as_deref())?;
            crate::offline::dry_run::review_body(&object, &namespace, &args.uid)
        }
        (None, Some(path)) => {
            let value = parse_review(path)?;
            serde_json::to_vec(&value).context("re-encoding the review")?
        }
        (None, None) => bail!("give --pod FILE (or NAMESPACE/NAME of a live pod) or --review FILE"),
    };
    let account = account(&config, &args.bounds.into(), &body)?;
    render(&account, args.output)
}

/// The account as `--output` asks for it.
fn render(account: &Account, output: ExplainOutput) -> Result<String> {
    Ok(match output {
        ExplainOutput::Text => account::text(account),
        ExplainOutput::Json => pretty(account)?,
    })
}

//! `persistence-webhook check`: a health report of a live install (SPEC §9),
//! like `linkerd check`. Each group of checks judges objects read from the
//! API server; the judging is pure and lives in one room per concept, the
//! reading in `gather`:
//!
//! - `webhook`: the MutatingWebhookConfiguration's fields;
//! - `certificates`: caBundle, serving Secret, chain, names, expiry;
//! - `workload`: Deployment readiness, Service endpoints, `serve`'s flags;
//! - `config_map`: the persistence config, through `serve`'s validator;
//! - `namespace`: per opted-in namespace, the Secrets (key names only) and
//!   claims its stores reference; `probe`: a server-side dry-run pod
//!   patched exactly as the core's `review` predicts;
//! - `report`: the lines, the JSON and the exit status.
//!
//! It never writes: the probe pods are dry runs, stored nowhere. It reads
//! Secrets' key names only (see [`objects`]).

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::ClusterArgs;

mod certificates;
mod config_map;
mod gather;
mod namespace;
pub mod objects;
mod probe;
pub mod report;
mod selector;
mod webhook;
mod workload;

pub use report::{Check, Report, Status};

/// Flags of `check`. The defaults are the names in `manifests/base`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// How to reach the API server.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The namespace the webhook runs in (its Deployment, Service, serving
    /// Secret and ConfigMap).
    #[arg(long, value_name = "NS", default_value = "persistence-webhook")]
    pub webhook_namespace: String,

    /// The name of the MutatingWebhookConfiguration, the Deployment and
    /// the Service.
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub webhook_name: String,

    /// The Secret holding the serving certificate (`tls.crt`).
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook-tls")]
    pub tls_secret: String,

    /// The ConfigMap holding the persistence config.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "persistence-webhook-config"
    )]
    pub config_map: String,

    /// The ConfigMap's key holding the persistence config.
    #[arg(long, value_name = "KEY", default_value = "persistence.yaml")]
    pub config_key: String,

    /// Check only these namespaces (repeatable), labelled or not; default:
    /// every namespace labelled polyaxon.com/persistence-injection=enabled.
    #[arg(long = "namespace", short = 'n', value_name = "NS")]
    pub namespaces: Vec<String>,

    /// The image of the dry-run probe pods (never pulled); change it if an
    /// admission policy allows only your registries.
    #[arg(long, value_name = "IMAGE", default_value = probe::DEFAULT_IMAGE)]
    pub probe_image: String,

    /// Namespaces checked at once.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Deadline of each API request (a dry run waits for the webhook, up to
    /// its timeoutSeconds).
    #[arg(long, value_name = "DURATION", default_value = "35s",
          value_parser = humantime_duration)]
    pub timeout: humantime::Duration,

    /// Text for people, or JSON (the same content) for tools.
    #[arg(long, short = 'o', value_enum, default_value_t = CheckOutput::Text)]
    pub output: CheckOutput,
}

fn humantime_duration(s: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = s.parse().map_err(|e| format!("{e} (examples: 10s, 1m)"))?;
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(d)
}

/// `check --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// Grouped lines with hints and a summary.
    Text,
    /// `{success, summary, groups: [{name, checks: [...]}]}`.
    Json,
}

/// Runs the checks. An error means no report could be made at all (no
/// kubeconfig, the API server unreachable): exit status 2.
pub async fn run(args: &CheckArgs) -> anyhow::Result<Report> {
    let client = super::client(&args.cluster, *args.timeout).await?;
    gather::report(client, args, std::time::SystemTime::now()).await
}

/// The command: prints the report; exit 0 when nothing failed, 1 when
/// something did, 2 when there is no report (with the reason on stderr).
pub fn main(args: &CheckArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            let text = match args.output {
                CheckOutput::Text => report.text(),
                CheckOutput::Json => report.json(),
            };
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

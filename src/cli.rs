//! The command line: the list of commands. Each command's flags live beside
//! the command (`serve`'s in [`crate::serve`], `check`'s in
//! [`crate::cluster::check`], `certs`' in [`crate::certs`]), and its module
//! does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Kubernetes mutating admission webhook that gives pods the data and outputs
/// stores they select (Polyaxon-style persistence).
#[derive(Debug, Parser)]
#[command(name = "persistence-webhook", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::flags::{BoundsArgs, LogFormat, DEFAULT_UID};

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve AdmissionReviews over HTTPS (POST /mutate), reloading the config
    /// and the certificate when their files change.
    Serve(crate::serve::ServeArgs),
    /// Run the admission decision offline on a pod, a stream of manifests
    /// (workloads' pod templates included) or an AdmissionReview: what the
    /// webhook would do, with no cluster. Exit 0 allowed, 1 denied, 2 usage,
    /// input or config error.
    Mutate(MutateArgs),
    /// Check a directory of cases (files named persistence-test.yaml: a
    /// config, manifests, and each Pod's or workload's expected outcome)
    /// with the same decision as `mutate`. Exit 0 when every case passes, 1
    /// when one fails, 2 for usage errors or a `--junit` file not written.
    Test(TestArgs),
    /// Make a CA and a serving certificate for the webhook Service (ECDSA
    /// P-256), and print the caBundle for the webhook configuration.
    Certs(crate::certs::CertsArgs),
    /// Say in plain words what the webhook does with a pod and why: offline
    /// for a pod file or an AdmissionReview (the decision `serve` and
    /// `mutate` make), or for a live pod (`--pod NAMESPACE/NAME`, through
    /// the kubeconfig, against the installed config unless --config): what
    /// it got, or why it was not mutated. Exit 0 when
    /// explained (whatever the decision), 2 for usage, input, config or
    /// cluster errors.
    Explain(ExplainArgs),
    /// A health report of a live install, through the kubeconfig or the
    /// in-cluster credentials: one line per check, grouped, each with a
    /// hint. Exit 0 when nothing failed, 1 when something did, 2 when the
    /// API server cannot be reached.
    Check(crate::cluster::check::CheckArgs),
}

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

    /// For a live pod: the MutatingWebhookConfiguration to look at, and
    /// (without --config) the Deployment whose mounted config is read.
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub webhook_name: String,

    /// For a live pod without --config: the namespace of the webhook's
    /// Deployment and ConfigMap.
    #[arg(long, value_name = "NS", default_value = "persistence-webhook")]
    pub webhook_namespace: String,

    /// How to reach the API server for a live pod.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,

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

/// Flags of `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The directory searched for persistence-test.yaml files (recursively).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Also write a JUnit XML report here, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// The bounds on one review, as `serve` applies them.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// Flags of `mutate`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["pod", "review"]))]
pub struct MutateArgs {
    /// The persistence config (YAML, with or without the top-level `persistence:` key).
    #[arg(long, value_name = "FILE", env = "PERSISTENCE_WEBHOOK_CONFIG")]
    pub config: PathBuf,

    /// A pod manifest, YAML or JSON (`-` reads stdin); or manifests as a
    /// repository holds them: a YAML stream or a `List` of Pods, Jobs,
    /// CronJobs, Deployments, StatefulSets, DaemonSets, ReplicaSets (their
    /// pod templates are mutated) and other kinds (passed through).
    #[arg(long, short = 'f', visible_alias = "file", value_name = "FILE")]
    pub pod: Option<PathBuf>,

    /// An AdmissionReview request, JSON or YAML (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub review: Option<PathBuf>,

    /// What to print: the mutated pod (YAML), the JSON Patch, or the
    /// AdmissionReview response. For a stream: the stream, or a JSON list
    /// with one entry per Pod or workload.
    #[arg(long, value_enum, default_value_t = Output::Pod)]
    pub output: Output,

    /// Namespace for a pod whose manifest has none (default: `default`, as kubectl).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,

    /// Admission uid for a `--pod` input; a generateName pod's outputs
    /// sub-path ends with it.
    #[arg(long, value_name = "UID", default_value = DEFAULT_UID)]
    pub uid: String,

    /// The bounds on one review, as `serve` applies them.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// `mutate --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The pod after the patch, as YAML.
    Pod,
    /// The JSON Patch array (`[]` when nothing changes).
    Patch,
    /// The AdmissionReview response JSON, as the API server would receive it.
    Review,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::bounds::Bounds;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(
            [
                "persistence-webhook",
                "mutate",
                "--config",
                "c.yaml",
                "--pod",
                "p.yaml",
            ]
            .iter()
            .chain(args),
        )
    }

    fn bounds(cli: &Cli) -> Bounds {
        match &cli.command {
            Command::Mutate(m) => m.bounds.into(),
            other => panic!("expected mutate, got {other:?}"),
        }
    }

    #[test]
    fn bound_flags_default_and_parse() {
        let cli = parse(&[]).expect("defaults");
        assert_eq!(bounds(&cli), Bounds::default());
        let cli = parse(&["--max-patch-bytes", "2048", "--max-injected-items", "7"])
            .expect("explicit values");
        assert_eq!(
            bounds(&cli),
            Bounds {
                max_patch_bytes: 2048,
                max_injected_items: 7
            }
        );
        let serve = Cli::try_parse_from([
            "persistence-webhook",
            "serve",
            "--demo",
            "--max-injected-items",
            "5",
        ])
        .expect("serve takes the same flags");
        match serve.command {
            Command::Serve(s) => assert_eq!(s.bounds.max_injected_items, 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_and_nonsense_bounds_are_refused_naming_the_range() {
        let cases = [
            ("--max-patch-bytes=0", "0 is not in 1..=1073741824"),
            ("--max-injected-items=0", "0 is not in 1..=100000000"),
            ("--max-patch-bytes=-1", "invalid value '-1'"),
            ("--max-injected-items=many", "invalid value 'many'"),
        ];
        for (arg, want) in cases {
            let err = parse(&[arg]).expect_err(want).to_string();
            assert!(err.contains(want), "{arg}: {err}");
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(err.contains(flag), "{arg}: the flag is named: {err}");
        }
    }
}

//! The command line: `serve`, `mutate`, `certs`. Flags only; each command's
//! module does the work.

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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission decision offline on a pod or an AdmissionReview:
    /// what the webhook would do, with no cluster. Exit 0 allowed, 1 denied,
    /// 2 usage, input or config error.
    Mutate(MutateArgs),
}

/// Flags of `mutate`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["pod", "review"]))]
pub struct MutateArgs {
    /// The persistence config (YAML, with or without the top-level `persistence:` key).
    #[arg(long, value_name = "FILE", env = "PERSISTENCE_WEBHOOK_CONFIG")]
    pub config: PathBuf,

    /// A pod manifest, YAML or JSON (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub pod: Option<PathBuf>,

    /// An AdmissionReview request, JSON or YAML (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub review: Option<PathBuf>,

    /// What to print: the mutated pod (YAML), the JSON Patch, or the
    /// AdmissionReview response.
    #[arg(long, value_enum, default_value_t = Output::Pod)]
    pub output: Output,

    /// Namespace for a pod whose manifest has none (default: `default`, as kubectl).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,

    /// Admission uid for a `--pod` input; a generateName pod's outputs
    /// sub-path ends with it.
    #[arg(
        long,
        value_name = "UID",
        default_value = "00000000-0000-0000-0000-000000000000"
    )]
    pub uid: String,
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

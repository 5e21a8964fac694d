//! The command line: `serve`, `mutate`, `certs`. Flags only; each command's
//! module does the work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Serve AdmissionReviews over HTTPS (POST /mutate), reloading the config
    /// and the certificate when their files change.
    Serve(ServeArgs),
    /// Run the admission decision offline on a pod or an AdmissionReview:
    /// what the webhook would do, with no cluster. Exit 0 allowed, 1 denied,
    /// 2 usage, input or config error.
    Mutate(MutateArgs),
    /// Make a CA and a serving certificate for the webhook Service (ECDSA
    /// P-256), and print the caBundle for the webhook configuration.
    Certs(CertsArgs),
}

/// Flags of `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The webhook Service's name.
    #[arg(long, default_value = "persistence-webhook")]
    pub service: String,

    /// The webhook Service's namespace.
    #[arg(long, default_value = "persistence-webhook")]
    pub namespace: String,

    /// Extra DNS names for the serving certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,

    /// Extra IP addresses for the serving certificate (repeatable).
    #[arg(long, value_name = "IP")]
    pub ip: Vec<std::net::IpAddr>,

    /// How long both certificates are valid.
    #[arg(long, value_name = "DURATION", default_value = "365days")]
    pub validity: HumanDuration,

    /// Where to write ca.crt, ca.key, tls.crt, tls.key, ca-bundle.b64 and
    /// webhook-ca-bundle.yaml (a kustomize patch).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out: PathBuf,

    /// Replace an existing CA in --out (every caBundle that trusts the old
    /// one must then be updated).
    #[arg(long, conflicts_with = "renew")]
    pub force: bool,

    /// Keep the CA in --out and issue a new serving certificate from it: the
    /// caBundle does not change, so rotation needs no webhook update.
    #[arg(long)]
    pub renew: bool,
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

    /// The bounds on one review, as `serve` applies them.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// The bounds on one review's patch (SPEC §5 "Bounded"), shared by `serve`
/// and `mutate` so the dry run answers as the server does.
#[derive(Debug, Clone, Copy, Args)]
pub struct BoundsArgs {
    /// Largest JSON Patch (before base64) the webhook answers with; a pod
    /// whose patch would be larger is denied. etcd keeps objects of at most
    /// 1.5 MiB, so more than 1 MiB of patch cannot make a pod it stores.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PERSISTENCE_WEBHOOK_MAX_PATCH_BYTES",
        default_value_t = crate::bounds::DEFAULT_MAX_PATCH_BYTES,
        value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024)
    )]
    pub max_patch_bytes: u64,

    /// Most mounts and env vars injected into one pod, counted as targeted
    /// containers × (mounts + env vars each); a pod past it is denied.
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_INJECTED_ITEMS",
        default_value_t = crate::bounds::DEFAULT_MAX_INJECTED_ITEMS,
        value_parser = clap::value_parser!(u64).range(1..=100_000_000)
    )]
    pub max_injected_items: u64,
}

impl From<BoundsArgs> for crate::bounds::Bounds {
    fn from(args: BoundsArgs) -> Self {
        let BoundsArgs {
            max_patch_bytes,
            max_injected_items,
        } = args;
        crate::bounds::Bounds {
            max_patch_bytes,
            max_injected_items,
        }
    }
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

/// Flags of `serve`. Each can also be set by its environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook endpoint.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "PERSISTENCE_WEBHOOK_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub addr: SocketAddr,

    /// Address of the plain-HTTP port for /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "PERSISTENCE_WEBHOOK_METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: SocketAddr,

    /// The persistence config (reloaded when its content changes).
    #[arg(
        long,
        value_name = "FILE",
        env = "PERSISTENCE_WEBHOOK_CONFIG",
        required_unless_present = "demo"
    )]
    pub config: Option<PathBuf>,

    /// The serving certificate chain, PEM (reloaded when its content changes).
    #[arg(
        long,
        value_name = "FILE",
        env = "PERSISTENCE_WEBHOOK_TLS_CERT",
        required_unless_present = "demo",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The serving private key, PEM.
    #[arg(
        long,
        value_name = "FILE",
        env = "PERSISTENCE_WEBHOOK_TLS_KEY",
        required_unless_present = "demo",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Try it out: the built-in example config (unless --config is given) and
    /// a throwaway certificate for localhost, whose CA is written to --demo-dir.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub demo: bool,

    /// Where --demo writes ca.crt.
    #[arg(long, value_name = "DIR", default_value = "persistence-webhook-demo")]
    pub demo_dir: PathBuf,

    /// How often the config and certificate files are checked for new content.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_RELOAD_INTERVAL",
        default_value = "2s"
    )]
    pub reload_interval: HumanDuration,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, value_name = "BYTES", env = "PERSISTENCE_WEBHOOK_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Deadline of one review, body read included; keep it below the webhook's
    /// timeoutSeconds. A shorter `?timeout=` from the API server wins.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_REQUEST_TIMEOUT",
        default_value = "8s"
    )]
    pub request_timeout: HumanDuration,

    /// Deadline for a client to finish the TLS handshake and send the request headers.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_HEADER_READ_TIMEOUT",
        default_value = "5s"
    )]
    pub header_read_timeout: HumanDuration,

    /// Reviews processed at once (bounds memory: each holds its body); more wait.
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_IN_FLIGHT",
        default_value_t = 32
    )]
    pub max_in_flight: usize,

    /// On SIGTERM/SIGINT, how long to keep serving (with /readyz at 503)
    /// before closing the port, so the Service stops sending traffic first.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_SHUTDOWN_DELAY",
        default_value = "5s"
    )]
    pub shutdown_delay: HumanDuration,

    /// On SIGTERM/SIGINT, how long in-flight reviews may take to finish.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_DRAIN_TIMEOUT",
        default_value = "15s"
    )]
    pub drain_timeout: HumanDuration,

    /// Log format; the level filter comes from RUST_LOG (default: info).
    #[arg(long, value_enum, env = "PERSISTENCE_WEBHOOK_LOG_FORMAT", default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// The bounds on one review.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// `serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// A `Duration` flag in human form (`500ms`, `10s`, `2m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::ops::Deref for HumanDuration {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("{e} (examples: 500ms, 10s, 2m)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

//! The command line: `serve`, `mutate`, `test`, `certs`. Flags only; each command's
//! module does the work.

use std::net::SocketAddr;
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

pub use crate::certs::CertsArgs;
use crate::flags::{bytes_in, count_in, duration_in};
pub use crate::flags::{BoundsArgs, LogFormat, DEFAULT_UID};

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve AdmissionReviews over HTTPS (POST /mutate), reloading the config
    /// and the certificate when their files change.
    Serve(ServeArgs),
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
    Certs(CertsArgs),
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
    /// Compile the config into a MutatingAdmissionPolicy, a
    /// ValidatingAdmissionPolicy and their bindings (Kubernetes 1.36+) that
    /// give every pod without the polyaxon.com/persistence annotation what
    /// the webhook gives it, with no server in its path; printed as one
    /// YAML stream. Exit 0 printed, 1 when the config holds what the
    /// policies cannot express, 2 for usage or config errors.
    Policy(crate::policy::PolicyArgs),
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
        required_unless_present_any = ["demo", "certificates"],
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The serving private key, PEM.
    #[arg(
        long,
        value_name = "FILE",
        env = "PERSISTENCE_WEBHOOK_TLS_KEY",
        required_unless_present_any = ["demo", "certificates"],
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
        default_value = "2s",
        value_parser = duration_in::<10, 3_600_000>
    )]
    pub reload_interval: humantime::Duration,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, value_name = "BYTES", env = "PERSISTENCE_WEBHOOK_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = bytes_in::<1024, { 64 * 1024 * 1024 }>)]
    pub max_body_bytes: usize,

    /// Bytes all request bodies together may hold, received or under review
    /// (at least --max-body-bytes). When it is spent, uploads wait.
    #[arg(long, value_name = "BYTES", env = "PERSISTENCE_WEBHOOK_MAX_BODY_BUFFER_BYTES", default_value_t = 32 * 1024 * 1024,
          value_parser = bytes_in::<1024, { 4 * 1024 * 1024 * 1024 }>)]
    pub max_body_buffer_bytes: usize,

    /// Deadline of one review, body read included; keep it below the webhook's
    /// timeoutSeconds. A shorter `?timeout=` from the API server wins.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_REQUEST_TIMEOUT",
        default_value = "8s",
        value_parser = duration_in::<100, 60_000>
    )]
    pub request_timeout: humantime::Duration,

    /// Deadline for a request's body to arrive whole (within
    /// --request-timeout). The API server sends the body at once; a body
    /// still arriving after this is cut (408) and its buffer freed.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_BODY_READ_TIMEOUT",
        default_value = "2s",
        value_parser = duration_in::<100, 60_000>
    )]
    pub body_read_timeout: humantime::Duration,

    /// Deadline, from a connection's accept, for the TLS handshake and the
    /// first request's headers (and for the headers of every later request).
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_HEADER_READ_TIMEOUT",
        default_value = "5s",
        value_parser = duration_in::<100, 300_000>
    )]
    pub header_read_timeout: humantime::Duration,

    /// A connection with no request in progress for this long is closed
    /// (HTTP/1.1 keep-alive and HTTP/2 alike).
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_IDLE_TIMEOUT",
        default_value = "60s",
        value_parser = duration_in::<100, 3_600_000>
    )]
    pub idle_timeout: humantime::Duration,

    /// Reviews computed at once (each holds its body, its patch and its
    /// answer); complete requests wait for a slot within their deadline.
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_IN_FLIGHT",
        default_value_t = 4,
        value_parser = count_in::<1, 4096>
    )]
    pub max_in_flight: usize,

    /// Open connections on the webhook port; past it, new ones wait in the
    /// kernel's backlog until one closes.
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_CONNECTIONS",
        default_value_t = 128,
        value_parser = count_in::<1, 1_000_000>
    )]
    pub max_connections: usize,

    /// Open connections one source address may hold on each port (at most
    /// --max-connections), and the same fraction of the body buffers; a
    /// connection over it is closed at once, before its TLS handshake. The
    /// API server needs a few (it multiplexes reviews over HTTP/2).
    /// [default: 32, or --max-connections if lower]
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_CONNECTIONS_PER_PEER",
        value_parser = count_in::<1, 1_000_000>
    )]
    pub max_connections_per_peer: Option<usize>,

    /// Open connections on the metrics port.
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_METRICS_CONNECTIONS",
        default_value_t = 32,
        value_parser = count_in::<1, 65_536>
    )]
    pub max_metrics_connections: usize,

    /// On SIGTERM/SIGINT, how long to keep serving (with /readyz at 503)
    /// before closing the port, so the Service stops sending traffic first.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_SHUTDOWN_DELAY",
        default_value = "5s",
        value_parser = duration_in::<0, 600_000>
    )]
    pub shutdown_delay: humantime::Duration,

    /// On SIGTERM/SIGINT, how long in-flight reviews may take to finish.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_DRAIN_TIMEOUT",
        default_value = "15s",
        value_parser = duration_in::<100, 600_000>
    )]
    pub drain_timeout: humantime::Duration,

    /// Log format; the level filter comes from RUST_LOG (default: info).
    #[arg(long, value_enum, env = "PERSISTENCE_WEBHOOK_LOG_FORMAT", default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// The bounds on one review.
    #[command(flatten)]
    pub bounds: BoundsArgs,

    /// Where the certificate comes from (`--certificates in-cluster`: a
    /// Secret the webhook manages itself). Boxed: these flags would make
    /// `serve` several times the size of the other commands.
    #[command(flatten)]
    pub certificates: Box<crate::cluster::certificates::CertificateArgs>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn serve(flags: &[&str]) -> Result<ServeArgs, String> {
        let mut argv = vec!["persistence-webhook", "serve", "--demo"];
        argv.extend_from_slice(flags);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Serve(a),
            }) => Ok(a),
            Ok(other) => Err(format!("not serve: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

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
    fn limits_that_would_disable_the_server_are_refused() {
        let cases = [
            (
                "--header-read-timeout",
                "0s",
                "must be between 100ms and 5m",
            ),
            ("--request-timeout", "0s", "must be between 100ms and 1m"),
            ("--request-timeout", "1h", "must be between 100ms and 1m"),
            ("--idle-timeout", "0s", "must be between 100ms and 1h"),
            ("--body-read-timeout", "0s", "must be between 100ms and 1m"),
            ("--drain-timeout", "0s", "must be between 100ms and 10m"),
            ("--reload-interval", "0s", "must be between 10ms and 1h"),
            (
                "--max-body-bytes",
                "0",
                "must be between 1024 and 67108864 bytes",
            ),
            ("--max-body-buffer-bytes", "10", "must be between 1024 and"),
            ("--max-in-flight", "0", "must be between 1 and 4096"),
            ("--max-connections", "0", "must be between 1 and 1000000"),
            (
                "--max-connections-per-peer",
                "0",
                "must be between 1 and 1000000",
            ),
            (
                "--max-metrics-connections",
                "0",
                "must be between 1 and 65536",
            ),
            ("--max-in-flight", "many", "invalid digit"),
        ];
        for (flag, value, want) in cases {
            let err = serve(&[flag, value]).expect_err(flag);
            assert!(err.contains(flag), "{flag} {value}: {err}");
            assert!(err.contains(want), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn sensible_limits_are_taken() {
        let a = serve(&[
            "--request-timeout",
            "500ms",
            "--max-in-flight",
            "1",
            "--max-connections",
            "10",
            "--shutdown-delay",
            "0s",
        ])
        .expect("valid");
        assert_eq!(*a.request_timeout, Duration::from_millis(500));
        assert_eq!((a.max_in_flight, a.max_connections), (1, 10));
        assert_eq!(*a.shutdown_delay, Duration::ZERO);
        let d = serve(&[]).expect("defaults");
        assert_eq!(
            (
                d.max_in_flight,
                d.max_connections,
                d.max_connections_per_peer,
                d.max_metrics_connections
            ),
            (4, 128, None, 32)
        );
        assert_eq!(d.max_body_buffer_bytes, 32 * 1024 * 1024);
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

//! The flags of `serve`, each with its environment variable: the two
//! addresses, the config and certificate sources, and the limits, each
//! range-checked by the shared parsers of [`crate::flags`] with the flag
//! named in its error. The rules between flags are checked at start-up
//! ([`super::start`]), before anything is bound. [`flags_in`] reads the
//! same flags in a Deployment's args, for `check` and live `explain`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cluster::certificates::{CertificateArgs, CertificateSource};
use crate::cluster::check::ServeFlags;
use crate::flags::{bytes_in, count_in, duration_in, BoundsArgs, LogFormat};

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

    /// Reviews computed or answering at once (each holds its body, its
    /// patch and its answer until the answer is written); complete requests
    /// wait for a slot within their deadline. A source address holds at
    /// most its share (see --max-connections-per-peer).
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_IN_FLIGHT",
        default_value_t = 32,
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

    /// Open connections one source address always gets on each port (at
    /// most --max-connections), and the same fraction of the body buffers
    /// and of the review slots (at least one).
    /// Past it, it may borrow connections no other peer can claim (alone:
    /// the port less one share); a connection past that is closed at once,
    /// before its TLS handshake. The API server calls over HTTP/1.1, a
    /// connection per concurrent review.
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
    pub certificates: Box<CertificateArgs>,
}

/// The command line with `serve` alone, as the binary names itself: the
/// same parse of `serve`'s flags and the same messages (a test pins them
/// to `crate::cli`'s), without naming the other commands.
#[derive(Debug, Parser)]
#[command(name = "persistence-webhook", version, propagate_version = true)]
struct ServeLine {
    #[command(subcommand)]
    command: ServeOnly,
}

#[derive(Debug, Subcommand)]
enum ServeOnly {
    /// Serve AdmissionReviews over HTTPS (POST /mutate), reloading the config
    /// and the certificate when their files change.
    Serve(ServeArgs),
}

/// A container's args (from `serve` on) and its env vars with literal
/// values, parsed as `serve` in that container parses them: the flags
/// `check` and live `explain` read, or the parser's first line. This
/// process's own environment plays no part (the `PERSISTENCE_WEBHOOK_*`
/// fallbacks of the person running `check` are not the container's): each
/// flag the args do not give is taken from the container's env var of that
/// flag, as clap would. The command layer hands it to them
/// (`crate::cluster::check::ServeParser`).
pub fn flags_in(args: &[String], env: &[(String, String)]) -> Result<ServeFlags, String> {
    let line = ServeLine::command();
    let mut argv: Vec<String> = vec!["persistence-webhook".to_owned()];
    let mut args = args.iter();
    argv.extend(args.next().cloned());
    if let Some(serve) = line.find_subcommand("serve") {
        argv.extend(from_env(serve, args.as_slice(), env));
    }
    argv.extend(args.cloned());
    let parsed = without_env(line)
        .try_get_matches_from(argv)
        .and_then(|m| ServeLine::from_arg_matches(&m));
    match parsed {
        Ok(ServeLine {
            command: ServeOnly::Serve(s),
        }) => Ok(serve_flags(s)),
        Err(e) => Err(e.to_string().lines().next().unwrap_or_default().to_owned()),
    }
}

/// What `check` and live `explain` read of parsed `serve` flags.
fn serve_flags(s: ServeArgs) -> ServeFlags {
    let in_cluster = s.certificates.certificates == Some(CertificateSource::InCluster);
    ServeFlags {
        config: s.config,
        demo: s.demo,
        request_timeout: *s.request_timeout,
        bounds: s.bounds.into(),
        certificate_secret: in_cluster.then_some(s.certificates.certificate_secret),
    }
}

/// `line` with no flag falling back to this process's environment.
fn without_env(line: clap::Command) -> clap::Command {
    line.mut_subcommand("serve", |serve| {
        serve.mut_args(|a| a.env(None::<&'static str>))
    })
}

/// The flags `env` gives that `args` do not, written `--long=value`.
fn from_env(serve: &clap::Command, args: &[String], env: &[(String, String)]) -> Vec<String> {
    serve
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let var = arg.get_env()?;
            // The last of a name wins, as in the container; an empty value
            // is no value, as clap takes it.
            let (_, value) = env.iter().rev().find(|(name, _)| var == name.as_str())?;
            if value.is_empty() {
                return None;
            }
            let flag = format!("--{long}");
            let given = args
                .iter()
                .any(|a| *a == flag || a.strip_prefix(&flag).is_some_and(|r| r.starts_with('=')));
            if given {
                return None;
            }
            // Every flag with an env var takes a value (`--demo` has none).
            arg.get_action()
                .takes_values()
                .then(|| format!("{flag}={value}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Bounds;
    use crate::cli::{Cli, Command};
    use crate::server::Limits;
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
            (32, 128, None, 32)
        );
        assert_eq!(d.max_body_buffer_bytes, 32 * 1024 * 1024);
    }

    #[test]
    fn default_limits_are_the_flags_defaults() {
        let a = serve(&[]).expect("defaults parse");
        let d = Limits::default();
        assert_eq!(d.max_body_bytes, a.max_body_bytes);
        assert_eq!(d.request_timeout, *a.request_timeout);
        assert_eq!(d.max_in_flight, a.max_in_flight);
        assert_eq!(d.max_body_buffer_bytes, a.max_body_buffer_bytes);
        assert_eq!(d.body_read_timeout, *a.body_read_timeout);
        assert_eq!(d.bounds, Bounds::from(a.bounds));
    }

    /// `flags_in` answers as the binary's own command line does: the same
    /// flags, the same first line of every refusal.
    #[test]
    fn flags_in_parses_as_the_command_line_does() {
        let through_cli = |args: &[&str]| -> Result<ServeFlags, String> {
            let argv = std::iter::once("persistence-webhook").chain(args.iter().copied());
            match Cli::try_parse_from(argv) {
                Ok(Cli {
                    command: Command::Serve(s),
                }) => Ok(serve_flags(s)),
                Ok(other) => Err(format!("not serve: {other:?}")),
                Err(e) => Err(e.to_string().lines().next().unwrap_or_default().to_owned()),
            }
        };
        let cases: &[&[&str]] = &[
            &["serve", "--demo"],
            &[
                "serve",
                "--config",
                "/etc/pw/c.yaml",
                "--tls-cert",
                "a",
                "--tls-key",
                "b",
            ],
            &[
                "serve",
                "--config=/c.yaml",
                "--certificates",
                "in-cluster",
                "--request-timeout=3s",
                "--max-injected-items=9",
            ],
            &["serve", "--demo", "--no-such-flag"],
            &["serve", "--demo", "--max-in-flight", "0"],
            &["serve", "--demo", "--request-timeout", "soon"],
            &["serve", "--demo", "--tls-cert", "a"],
            &["serve", "--config", "c.yaml"],
            &["serve", "--demo", "--certificates", "elsewhere"],
            &["serve", "--demo", "--certificate-check-interval", "1ns"],
            &["serve", "--help"],
            &["serve", "-h"],
            &["serve", "--version"],
            &["serve"],
        ];
        for args in cases {
            let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let want = through_cli(args);
            assert_eq!(flags_in(&owned, &[]), want, "{args:?}");
        }
        let parsed = flags_in(&["serve".into(), "--demo".into()], &[]).expect("parses");
        assert_eq!(parsed.request_timeout, Duration::from_secs(8));
        assert!(parsed.demo);
    }

    /// The container's env vars stand in for the flags its args do not
    /// give, as clap reads them in the container; this process's own
    /// environment is never read.
    #[test]
    fn flags_in_reads_the_containers_env_and_never_this_process() {
        let owned = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let env = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let with_env = flags_in(
            &owned(&[
                "serve",
                "--config",
                "/c.yaml",
                "--certificates",
                "in-cluster",
            ]),
            &env(&[
                ("PERSISTENCE_WEBHOOK_REQUEST_TIMEOUT", "3s"),
                ("PERSISTENCE_WEBHOOK_MAX_INJECTED_ITEMS", "7"),
                ("PERSISTENCE_WEBHOOK_MAX_INJECTED_ITEMS", "9"),
                ("UNRELATED", "x"),
            ]),
        );
        let as_flags = flags_in(
            &owned(&[
                "serve",
                "--config",
                "/c.yaml",
                "--certificates",
                "in-cluster",
                "--request-timeout=3s",
                "--max-injected-items=9",
            ]),
            &[],
        );
        assert_eq!(with_env, as_flags, "the last of a name wins");
        assert_eq!(
            with_env.as_ref().map(|f| f.request_timeout),
            Ok(Duration::from_secs(3))
        );

        let args_win = flags_in(
            &owned(&["serve", "--demo", "--request-timeout", "2s"]),
            &env(&[("PERSISTENCE_WEBHOOK_REQUEST_TIMEOUT", "5s")]),
        );
        assert_eq!(
            args_win.map(|f| f.request_timeout),
            Ok(Duration::from_secs(2))
        );

        let config = flags_in(
            &owned(&["serve", "--certificates", "in-cluster"]),
            &env(&[("PERSISTENCE_WEBHOOK_CONFIG", "/etc/pw/c.yaml")]),
        );
        assert_eq!(
            config.map(|f| f.config),
            Ok(Some(PathBuf::from("/etc/pw/c.yaml")))
        );

        let empty = flags_in(
            &owned(&["serve", "--certificates", "in-cluster"]),
            &env(&[("PERSISTENCE_WEBHOOK_CONFIG", "")]),
        );
        assert!(empty.is_err(), "an empty value is no value: {empty:?}");

        let bad = flags_in(
            &owned(&["serve", "--demo"]),
            &env(&[("PERSISTENCE_WEBHOOK_MAX_IN_FLIGHT", "0")]),
        );
        assert!(
            bad.as_ref().is_err_and(|e| e.contains("--max-in-flight")),
            "a bad env value is refused naming its flag: {bad:?}"
        );

        // Structurally: the parser has no env fallback left.
        let line = ServeLine::command();
        let names = |c: &clap::Command| {
            c.find_subcommand("serve")
                .map(|s| s.get_arguments().filter(|a| a.get_env().is_some()).count())
        };
        assert!(
            names(&line).is_some_and(|n| n > 10),
            "serve's flags have env fallbacks"
        );
        assert_eq!(names(&without_env(line)), Some(0));
    }
}

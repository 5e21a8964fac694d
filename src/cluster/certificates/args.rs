//! The flags of `serve --certificates in-cluster`, and the settings checked
//! from them: lifetimes that leave time for every renewal and rotation step.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::material::Issuer;
use crate::certs::CertRequest;
use crate::cluster::ClusterArgs;

/// Where `serve` takes its certificate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertificateSource {
    /// `--tls-cert` and `--tls-key`, reloaded when they change (the default).
    Files,
    /// A Secret this webhook creates, renews and rotates itself.
    InCluster,
}

/// The flags of `serve`'s in-cluster certificate mode.
#[derive(Debug, Clone, Args)]
pub struct CertificateArgs {
    /// Where the serving certificate comes from: files (--tls-cert,
    /// --tls-key), or a Secret the webhook manages itself in the cluster.
    #[arg(
        long,
        value_enum,
        value_name = "SOURCE",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATES"
    )]
    pub certificates: Option<CertificateSource>,

    /// In-cluster: the Secret holding the CA and the serving certificate.
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATE_SECRET",
        default_value = "persistence-webhook-certificates"
    )]
    pub certificate_secret: String,

    /// In-cluster: the MutatingWebhookConfiguration whose caBundle is kept
    /// in step with the Secret (every entry).
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_WEBHOOK_CONFIGURATION",
        default_value = "persistence-webhook"
    )]
    pub webhook_configuration: String,

    /// In-cluster: the Lease whose holder renews the certificates.
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_LEASE_NAME",
        default_value = "persistence-webhook-certificates"
    )]
    pub lease_name: String,

    /// In-cluster: how long the Lease holder may go without renewing before
    /// another replica takes over.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_LEASE_DURATION",
        default_value = "15s",
        value_parser = crate::flags::duration_in::<1_000, 600_000>
    )]
    pub lease_duration: humantime::Duration,

    /// In-cluster: the namespace of the Secret and the Lease (default: the
    /// pod's own, or the kubeconfig context's).
    #[arg(long, value_name = "NS", env = "PERSISTENCE_WEBHOOK_NAMESPACE")]
    pub namespace: Option<String>,

    /// In-cluster: the webhook Service's name, for the serving certificate's
    /// names (NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local).
    #[arg(
        long,
        value_name = "NAME",
        env = "PERSISTENCE_WEBHOOK_SERVICE",
        default_value = "persistence-webhook"
    )]
    pub service: String,

    /// In-cluster: an extra DNS name for the serving certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub certificate_dns: Vec<String>,

    /// In-cluster: an extra IP address for the serving certificate (repeatable).
    #[arg(long, value_name = "IP")]
    pub certificate_ip: Vec<IpAddr>,

    /// In-cluster: how long a CA is valid; it is rotated at two thirds of
    /// that, with an overlap in which the caBundle trusts both.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_CA_VALIDITY",
        default_value = "5years",
        value_parser = crate::flags::human_duration
    )]
    pub ca_validity: humantime::Duration,

    /// In-cluster: how long a serving certificate is valid; it is renewed at
    /// two thirds of that.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_SERVING_VALIDITY",
        default_value = "90days",
        value_parser = crate::flags::human_duration
    )]
    pub serving_validity: humantime::Duration,

    /// In-cluster: how often every replica reads the Secret, and the Lease
    /// holder checks what is due and the webhook configuration's caBundle.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATE_CHECK_INTERVAL",
        default_value = "10s",
        value_parser = crate::flags::duration_in::<100, 3_600_000>
    )]
    pub certificate_check_interval: humantime::Duration,

    /// How to reach the API server (in-cluster mode).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl CertificateArgs {
    /// Whether `--certificates in-cluster` was asked for.
    pub fn in_cluster(&self) -> bool {
        self.certificates == Some(CertificateSource::InCluster)
    }
}

/// The checked settings.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) issuer: Issuer,
    pub(super) check_interval: Duration,
    /// How long a change takes to reach the API server and every replica:
    /// three checks.
    pub(super) settle: Duration,
}

impl Settings {
    pub(super) fn new(args: &CertificateArgs, namespace: &str) -> anyhow::Result<Settings> {
        let check_interval = *args.certificate_check_interval;
        let (ca, serving) = (*args.ca_validity, *args.serving_validity);
        let settle = check_interval * 3;
        if serving < check_interval * 6 {
            anyhow::bail!(
                "--serving-validity ({}) must be at least six --certificate-check-interval ({}): it is renewed with a third of its life left, and every replica must read the new one in time",
                show(serving),
                show(check_interval)
            );
        }
        if ca < serving * 3 || ca / 3 < settle * 4 {
            anyhow::bail!(
                "--ca-validity ({}) must be at least three --serving-validity ({}) and 36 --certificate-check-interval ({}): the CA is rotated with a third of its life left, in steps of three checks each",
                show(ca),
                show(serving),
                show(check_interval)
            );
        }
        Ok(Settings {
            issuer: Issuer {
                request: CertRequest {
                    service: args.service.clone(),
                    namespace: namespace.to_owned(),
                    dns: args.certificate_dns.clone(),
                    ips: args.certificate_ip.clone(),
                    validity: serving,
                },
                ca_validity: ca,
                serving_validity: serving,
            },
            check_interval,
            settle,
        })
    }
}

/// A duration as it was probably written: whole days as days (humantime
/// would say "2months 29days 2h 52m 48s" for 90 days), else humantime's form.
fn show(d: Duration) -> String {
    const DAY: u64 = 86400;
    if d.as_secs() >= DAY && d.as_secs().is_multiple_of(DAY) && d.subsec_nanos() == 0 {
        format!("{}days", d.as_secs() / DAY)
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(flags: &[&str]) -> Result<CertificateArgs, String> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            c: CertificateArgs,
        }
        let argv = std::iter::once("x").chain(flags.iter().copied());
        Cli::try_parse_from(argv)
            .map(|c| c.c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn lifetimes_that_leave_no_time_to_rotate_are_refused() {
        let ok = args(&["--certificates", "in-cluster"]).expect("defaults");
        let s = Settings::new(&ok, "ns").expect("the defaults are sane");
        assert_eq!(s.settle, Duration::from_secs(30));
        assert!(ok.in_cluster());
        let cases = [
            (
                vec!["--serving-validity", "50s"],
                "--serving-validity (50s) must be at least six --certificate-check-interval (10s)",
            ),
            (
                vec!["--ca-validity", "100days"],
                "--ca-validity (100days) must be at least three --serving-validity (90days)",
            ),
            (
                vec![
                    "--certificate-check-interval",
                    "1s",
                    "--serving-validity",
                    "10s",
                    "--ca-validity",
                    "30s",
                ],
                "and 36 --certificate-check-interval (1s)",
            ),
        ];
        for (flags, want) in cases {
            let a = args(&flags).expect("parses");
            let err = Settings::new(&a, "ns").expect_err(want).to_string();
            assert!(err.contains(want), "{flags:?}: {err}");
        }
        let short = args(&[
            "--certificate-check-interval",
            "1s",
            "--serving-validity",
            "30s",
            "--ca-validity",
            "2m",
        ])
        .expect("parses");
        Settings::new(&short, "ns").expect("test lifetimes are accepted");
    }

    #[test]
    fn in_cluster_mode_needs_no_certificate_files() {
        use crate::cli::{Cli, Command};
        let parse = |extra: &[&str]| {
            let argv = ["persistence-webhook", "serve", "--config", "c.yaml"];
            Cli::try_parse_from(argv.iter().chain(extra))
        };
        let err = parse(&[]).expect_err("files by default").to_string();
        assert!(err.contains("--tls-cert"), "{err}");
        let cli = parse(&["--certificates", "in-cluster"]).expect("no files needed");
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert!(serve.certificates.in_cluster());
        assert_eq!(
            serve.certificates.certificate_secret,
            "persistence-webhook-certificates"
        );
        let files = parse(&[
            "--certificates",
            "files",
            "--tls-cert",
            "a",
            "--tls-key",
            "b",
        ])
        .expect("files named");
        let Command::Serve(serve) = files.command else {
            panic!("not serve")
        };
        assert!(!serve.certificates.in_cluster());
    }
}

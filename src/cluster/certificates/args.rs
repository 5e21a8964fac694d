//! The flags of `serve --certificates in-cluster`, and the settings checked
//! from them: lifetimes that leave time for every renewal and rotation step,
//! even when the Lease holder dies just before a step is due.
//!
//! The rules, with I the check interval, T a Lease takeover and S a slack:
//!
//! - T = 1.4 × `--lease-duration`: the others poll the Lease every fifth of
//!   a duration, so they first see the holder's last renewal up to a fifth
//!   late, wait a whole duration from then, and act at the next poll.
//! - S = 1 s, for the API calls of a step and clocks a little apart.
//! - The serving certificate is renewed with a third of its life left; that
//!   third must cover I (the holder's turn after the renewal falls due: it
//!   may die just before it) + T + I (every replica reads the new one) + S.
//! - The CA is rotated with a third of its life left; that third must cover
//!   the trust step (I + T), the switch (three checks of settling, I, T,
//!   three more checks for a new holder to see the bundle in place, I),
//!   every replica reading the switch (I) and S. A takeover in the drop step
//!   only keeps the old CA trusted longer. It must also be at least three
//!   serving lifetimes, so that no serving certificate is cut short by its CA
//!   before the rotation.
//! - Durations the schedule cannot honour are refused: the check interval
//!   in whole milliseconds, the Lease duration in whole seconds (the Lease
//!   records `leaseDurationSeconds`), validities in whole seconds (X.509
//!   dates count seconds).

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
        value_parser = whole_seconds_in::<1, 600>
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
    /// that, with an overlap in which the caBundle trusts both. At least
    /// three --serving-validity, and long enough for a rotation to survive
    /// a Lease takeover in each step (refused otherwise, saying how long).
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_CA_VALIDITY",
        default_value = "5years",
        value_parser = whole_seconds_in::<1, MAX_VALIDITY_SECS>
    )]
    pub ca_validity: humantime::Duration,

    /// In-cluster: how long a serving certificate is valid; it is renewed at
    /// two thirds of that, and the last third must cover a Lease takeover
    /// and two checks (refused otherwise, saying how long).
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_SERVING_VALIDITY",
        default_value = "90days",
        value_parser = whole_seconds_in::<1, MAX_VALIDITY_SECS>
    )]
    pub serving_validity: humantime::Duration,

    /// In-cluster: how often every replica reads the Secret, and the Lease
    /// holder checks what is due and the webhook configuration's caBundle.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PERSISTENCE_WEBHOOK_CERTIFICATE_CHECK_INTERVAL",
        default_value = "10s",
        value_parser = whole_millis_in::<100, 3_600_000>
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

/// The longest validity accepted: a hundred years (longer would overflow
/// the arithmetic of dates before it meant anything).
const MAX_VALIDITY_SECS: u64 = 100 * 365 * 86400;

/// The slack of every deadline: API calls, clocks a little apart.
const SLACK: Duration = Duration::from_secs(1);

/// What a step's deadline must cover, from the flags.
#[derive(Debug, Clone, Copy)]
struct Budget {
    check: Duration,
    takeover: Duration,
    settle: Duration,
}

impl Budget {
    fn new(check: Duration, lease: Duration) -> Budget {
        Budget {
            check,
            takeover: lease * 7 / 5,
            settle: check * 3,
        }
    }

    /// The least third of a serving certificate's life.
    fn serving(&self) -> Duration {
        self.check + self.takeover + self.check + SLACK
    }

    /// The trust step, the switch, every replica reading it: the least
    /// third of a CA's life.
    fn ca(&self) -> (Duration, Duration, Duration) {
        let trust = self.check + self.takeover;
        let switch = self.settle + self.check + self.takeover + self.settle + self.check;
        (trust, switch, trust + switch + self.check + SLACK)
    }
}

impl CertificateArgs {
    /// Refuses lifetimes that cannot survive a Lease takeover (the rules
    /// at the top of this module), saying which flag to raise and by how
    /// much. Needs no API server: called before connecting.
    pub fn check_lifetimes(&self) -> anyhow::Result<()> {
        let check_interval = *self.certificate_check_interval;
        let (ca, serving) = (*self.ca_validity, *self.serving_validity);
        let budget = Budget::new(check_interval, *self.lease_duration);
        let need = budget.serving();
        if serving / 3 < need {
            let least = whole_seconds_up(need * 3);
            anyhow::bail!(
                "--serving-validity ({}) is too short to survive a Lease takeover: it is renewed with a third of its life left ({}), which must cover a --certificate-check-interval ({}) for the holder's turn, a takeover if the holder dies then (1.4 × --lease-duration = {}), another check interval for every replica to read the new certificate and {} of slack: {}. Raise --serving-validity by {}, to at least {} (or shorten --lease-duration or --certificate-check-interval)",
                show(serving),
                show(serving / 3),
                show(check_interval),
                show(budget.takeover),
                show(SLACK),
                show(need),
                show(least.saturating_sub(serving)),
                show(least),
            );
        }
        let (trust, switch, need) = budget.ca();
        if ca / 3 < need || ca < serving * 3 {
            let least = whole_seconds_up(need * 3).max(serving * 3);
            anyhow::bail!(
                "--ca-validity ({}) is too short to survive a Lease takeover in each step of its rotation: it is rotated with a third of its life left ({}), which must cover trusting the new CA (a check interval and a takeover: {}), switching to it (settling for three check intervals, a check, a takeover and three more check intervals for the new holder to see the caBundle in place, a check: {}), every replica reading the switch (a check interval) and {} of slack: {}; and it must be at least three --serving-validity ({}). Raise --ca-validity by {}, to at least {}",
                show(ca),
                show(ca / 3),
                show(trust),
                show(switch),
                show(SLACK),
                show(need),
                show(serving * 3),
                show(least.saturating_sub(ca)),
                show(least),
            );
        }
        Ok(())
    }
}

impl Settings {
    pub(super) fn new(args: &CertificateArgs, namespace: &str) -> anyhow::Result<Settings> {
        args.check_lifetimes()?;
        let check_interval = *args.certificate_check_interval;
        let (ca, serving) = (*args.ca_validity, *args.serving_validity);
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
            settle: Budget::new(check_interval, *args.lease_duration).settle,
        })
    }
}

/// `d` rounded up to whole seconds (validities count whole seconds).
fn whole_seconds_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// A duration flag of whole seconds, between `MIN` and `MAX` seconds.
fn whole_seconds_in<const MIN: u64, const MAX: u64>(
    s: &str,
) -> Result<humantime::Duration, String> {
    let d = crate::flags::human_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "must be whole seconds ({} is not): certificates and the Lease count whole seconds",
            humantime::format_duration(*d)
        ));
    }
    if d.as_secs() < MIN || d.as_secs() > MAX {
        return Err(format!("must be between {MIN}s and {MAX}s"));
    }
    Ok(d)
}

/// A duration flag of whole milliseconds, between `MIN_MS` and `MAX_MS`.
fn whole_millis_in<const MIN_MS: u64, const MAX_MS: u64>(
    s: &str,
) -> Result<humantime::Duration, String> {
    let d = crate::flags::duration_in::<MIN_MS, MAX_MS>(s)?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "must be whole milliseconds ({} is not): the schedule counts milliseconds",
            humantime::format_duration(*d)
        ));
    }
    Ok(d)
}

/// A duration as it was probably written: whole days as days (humantime
/// would say "2months 29days 2h 52m 48s" for 90 days), else humantime's form.
fn show(d: Duration) -> String {
    const DAY: u64 = 86400;
    // Thirds of seconds end in nanoseconds nobody wrote.
    let d = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
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

    /// `--lease-duration 4s --certificate-check-interval 1s` and the
    /// validities given.
    fn short(serving: &str, ca: &str) -> CertificateArgs {
        args(&[
            "--lease-duration",
            "4s",
            "--certificate-check-interval",
            "1s",
            "--serving-validity",
            serving,
            "--ca-validity",
            ca,
        ])
        .expect("parses")
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
                "--serving-validity (50s) is too short to survive a Lease takeover",
            ),
            (
                vec!["--serving-validity", "50s"],
                "a third of its life left (16s 666ms)",
            ),
            (
                vec!["--serving-validity", "50s"],
                "Raise --serving-validity by 1m 16s, to at least 2m 6s",
            ),
            (
                vec!["--ca-validity", "100days"],
                "and it must be at least three --serving-validity (270days). Raise --ca-validity by 170days, to at least 270days",
            ),
        ];
        for (flags, want) in cases {
            let a = args(&flags).expect("parses");
            let err = Settings::new(&a, "ns").expect_err(want).to_string();
            assert!(err.contains(want), "{flags:?}: {err}");
        }
    }

    /// The lifetimes (serving 6 s, CA 36 s, check 1 s, Lease 4 s)
    /// let every replica serve an expired certificate after a takeover: each
    /// refusal says which flag to raise and by how much, and the least
    /// lifetimes it names are accepted (the e2e test runs at exactly those).
    #[test]
    fn lifetimes_that_cannot_survive_a_takeover_are_refused() {
        let err = |a: &CertificateArgs| Settings::new(a, "ns").expect_err("refused").to_string();
        let serving = err(&short("6s", "36s"));
        for want in [
            "--serving-validity (6s) is too short to survive a Lease takeover",
            "a third of its life left (2s)",
            "1.4 × --lease-duration = 5s 600ms",
            "Raise --serving-validity by 20s, to at least 26s",
        ] {
            assert!(serving.contains(want), "{want:?} in {serving}");
        }
        let ca = err(&short("26s", "36s"));
        for want in [
            "--ca-validity (36s) is too short to survive a Lease takeover in each step of its rotation",
            "a third of its life left (12s)",
            "trusting the new CA (a check interval and a takeover: 6s 600ms)",
            "a check: 13s 600ms)",
            "1s of slack: 22s 200ms",
            "Raise --ca-validity by 42s, to at least 1m 18s",
        ] {
            assert!(ca.contains(want), "{want:?} in {ca}");
        }
        // The least accepted, and a second under each refused.
        Settings::new(&short("26s", "78s"), "ns").expect("the least lifetimes");
        assert!(err(&short("25s", "78s")).contains("to at least 26s"));
        assert!(err(&short("26s", "77s")).contains("to at least 1m 18s"));
        // The CA's own takeover rule, when three serving lives are not the
        // larger: checks of 10 s and a Lease of 1 s.
        let long = |serving: &str, ca: &str| {
            args(&[
                "--lease-duration",
                "1s",
                "--serving-validity",
                serving,
                "--ca-validity",
                ca,
            ])
            .expect("parses")
        };
        assert!(err(&long("67s", "1h")).contains("to at least 1m 8s"));
        let e = err(&long("68s", "300s"));
        assert!(
            e.contains("Raise --ca-validity by 12s, to at least 5m 12s"),
            "{e}"
        );
        Settings::new(&long("68s", "312s"), "ns").expect("the least there");
        // The old rule accepted the e2e lifetimes of before (30 s, 2 min)
        // with the default Lease of 15 s: a takeover takes 21 s there.
        let before = args(&[
            "--certificate-check-interval",
            "1s",
            "--serving-validity",
            "30s",
            "--ca-validity",
            "2m",
        ])
        .expect("parses");
        assert!(err(&before).contains("to at least 1m 12s"));
    }

    /// What the schedule could not honour is refused by the parser, naming
    /// the flag.
    #[test]
    fn durations_the_schedule_cannot_honour_are_refused() {
        let cases = [
            (
                vec!["--certificate-check-interval", "100500us"],
                "must be whole milliseconds",
            ),
            (
                vec!["--certificate-check-interval", "99ms"],
                "between 100ms and 1h",
            ),
            (vec!["--lease-duration", "1500ms"], "must be whole seconds"),
            (
                vec!["--serving-validity", "26s 500ms"],
                "must be whole seconds",
            ),
            (vec!["--ca-validity", "0s"], "must be between 1s and"),
        ];
        for (flags, want) in cases {
            let e = args(&flags).map(|_| ()).expect_err(want);
            assert!(e.contains(want), "{flags:?}: {e}");
            assert!(e.contains(flags[0]), "names the flag: {e}");
        }
        let fine = args(&["--certificate-check-interval", "150ms"]).expect("whole ms");
        assert_eq!(*fine.certificate_check_interval, Duration::from_millis(150));
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

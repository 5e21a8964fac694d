//! The command line: the list of commands. Each command's flags live beside
//! the command (`serve`'s in [`crate::serve`], `check`'s in
//! [`crate::cluster::check`], `certs`' in [`crate::certs`]), and its module
//! does the work.

use clap::{Parser, Subcommand};

/// Kubernetes mutating admission webhook that gives pods the data and outputs
/// stores they select (Polyaxon-style persistence).
#[derive(Debug, Parser)]
#[command(name = "persistence-webhook", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::explain::{ExplainArgs, ExplainOutput};
pub use crate::flags::{BoundsArgs, LogFormat, DEFAULT_UID};
pub use crate::mutate::{MutateArgs, Output};
pub use crate::test::TestArgs;

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
    /// Compile the config into a MutatingAdmissionPolicy, a
    /// ValidatingAdmissionPolicy and their bindings (Kubernetes 1.36+) that
    /// give every pod without the polyaxon.com/persistence annotation what
    /// the webhook gives it, with no server in its path; printed as one
    /// YAML stream. Exit 0 printed, 1 when the config holds what the
    /// policies cannot express, 2 for usage or config errors.
    Policy(crate::policy::PolicyArgs),
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

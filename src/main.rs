//! Entry point: parse the command line, run the command, map the result to
//! an exit status (`mutate`: 0 allowed, 1 denied, 2 usage, input or config
//! error;
//! `test`: 0 every case passed, 1 one failed, 2 usage error or `--junit`
//! not written;
//! `explain`: 0 explained, 2 usage, input, config or cluster error;
//! `check`: 0 nothing failed, 1 a check failed, 2 no report (no kubeconfig,
//! API server unreachable);
//! `certs`: 0 written, 2 when it cannot write them;
//! `serve`: 0 after a clean shutdown, 2 when it cannot start;
//! `policy`: 0 printed, 1 the config cannot be expressed as policies, 2
//! usage or config error).

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use persistence_webhook::cli::{Cli, Command, MutateArgs, TestArgs};
use persistence_webhook::cluster::check::{self, CheckArgs, CheckOutput};
use persistence_webhook::mutate::{self, Verdict};
use persistence_webhook::serve::{self, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mutate(args) => run_mutate(&args),
        Command::Serve(args) => run_serve(args),
        Command::Test(args) => run_test(&args),
        Command::Explain(args) => run_explain(&args),
        Command::Check(args) => run_check(&args),
        Command::Policy(args) => run_policy(&args),
        Command::Certs(args) => match persistence_webhook::certs::run(&args) {
            Ok(written) => {
                for f in &written.files {
                    eprintln!("wrote {}", f.display());
                }
                for note in &written.notes {
                    eprintln!("{note}");
                }
                println!("{}", written.ca_bundle);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_mutate(args: &MutateArgs) -> ExitCode {
    match mutate::run(args) {
        Ok(printed) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth a panic.
            let _ = out.write_all(printed.stdout.as_bytes());
            let _ = out.flush();
            if let Some(msg) = printed.stderr {
                eprintln!("{msg}");
            }
            match printed.verdict {
                Verdict::Allowed => ExitCode::SUCCESS,
                Verdict::Denied => ExitCode::from(1),
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_policy(args: &persistence_webhook::policy::PolicyArgs) -> ExitCode {
    use persistence_webhook::policy::{run, Compiled};
    match run(args) {
        Ok(Compiled::Objects(yaml)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(yaml.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Ok(Compiled::Refused(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_test(args: &TestArgs) -> ExitCode {
    use persistence_webhook::test;
    let results = match test::run(&args.dir, args.bounds.into()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(test::summary(&results).as_bytes());
    let _ = out.flush();
    if let Some(path) = &args.junit {
        let written = test::junit(&results).and_then(|xml| {
            std::fs::write(path, xml)
                .map_err(|e| anyhow::anyhow!("--junit {}: {e}", path.display()))
        });
        if let Err(e) = written {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The one async runtime, for the commands that talk to the network
/// (kept by the caller until its result is mapped), or exit status 2 when
/// none starts.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        })
}

fn run_explain(args: &persistence_webhook::explain::ExplainArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(no_runtime) => return no_runtime,
    };
    match runtime.block_on(persistence_webhook::explain::run(args)) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(no_runtime) => return no_runtime,
    };
    match runtime.block_on(check::run(args, serve::flags_in)) {
        Ok(report) => {
            let text = match args.output {
                CheckOutput::Text => report.text(),
                CheckOutput::Json => report.json(),
            };
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

fn run_serve(args: ServeArgs) -> ExitCode {
    persistence_webhook::logs::init(args.log_format);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(no_runtime) => return no_runtime,
    };
    match runtime.block_on(serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

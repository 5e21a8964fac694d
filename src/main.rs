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

use std::future::Future;
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
            Err(e) => failed(&e),
        },
    }
}

/// Writes `text` to stdout. A closed pipe (`| head`) is not worth a panic.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Tells the error on stderr: exit status 2, which every command gives when
/// it cannot do its work (usage, input, config, cluster).
fn failed(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

/// Runs `work` on the one async runtime, for the commands that talk to the
/// network, and maps its result with `done` while the runtime still lives
/// (its shutdown, when it is dropped, can wait on blocking threads: the
/// result is told before); exit status 2 when no runtime starts.
fn on_runtime<F: Future>(work: F, done: impl FnOnce(F::Output) -> ExitCode) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => done(runtime.block_on(work)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_mutate(args: &MutateArgs) -> ExitCode {
    match mutate::run(args) {
        Ok(printed) => {
            print(&printed.stdout);
            if let Some(msg) = printed.stderr {
                eprintln!("{msg}");
            }
            match printed.verdict {
                Verdict::Allowed => ExitCode::SUCCESS,
                Verdict::Denied => ExitCode::from(1),
            }
        }
        Err(e) => failed(&e),
    }
}

fn run_policy(args: &persistence_webhook::policy::PolicyArgs) -> ExitCode {
    use persistence_webhook::policy::{run, Compiled};
    match run(args) {
        Ok(Compiled::Objects(yaml)) => {
            print(&yaml);
            ExitCode::SUCCESS
        }
        Ok(Compiled::Refused(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => failed(&e),
    }
}

fn run_test(args: &TestArgs) -> ExitCode {
    use persistence_webhook::test;
    let results = match test::run(&args.dir, args.bounds.into()) {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    print(&test::summary(&results));
    if let Some(path) = &args.junit {
        let written = test::junit(&results).and_then(|xml| {
            std::fs::write(path, xml)
                .map_err(|e| anyhow::anyhow!("--junit {}: {e}", path.display()))
        });
        if let Err(e) = written {
            return failed(&e);
        }
    }
    if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_explain(args: &persistence_webhook::explain::ExplainArgs) -> ExitCode {
    on_runtime(
        persistence_webhook::explain::run(args),
        |explained| match explained {
            Ok(out) => {
                print(&out);
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e),
        },
    )
}

fn run_check(args: &CheckArgs) -> ExitCode {
    on_runtime(check::run(args, serve::flags_in), |checked| match checked {
        Ok(report) => {
            print(&match args.output {
                CheckOutput::Text => report.text(),
                CheckOutput::Json => report.json(),
            });
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => failed(&e),
    })
}

fn run_serve(args: ServeArgs) -> ExitCode {
    persistence_webhook::logs::init(args.log_format);
    on_runtime(serve::run(args), |served| match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            failed(&e)
        }
    })
}

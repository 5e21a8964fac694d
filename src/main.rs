//! Entry point: parse the command line, run the command, map the result to
//! an exit status (0 allowed, 1 denied, 2 usage or config error).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use persistence_webhook::cli::{Cli, Command};
use persistence_webhook::mutate::{self, Verdict};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mutate(args) => match mutate::run(&args) {
            Ok(printed) => {
                let mut out = std::io::stdout().lock();
                // A closed pipe (`| head`) is not an error worth a panic.
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
        },
    }
}

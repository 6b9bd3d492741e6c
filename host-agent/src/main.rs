//! `layerpass` binary: parse, run, print the error chain once, exit with a status. The
//! command line (`cli/`: clap, anyhow, indicatif) lives here, not in the library.
//!
//! Exit status: 0 success, 1 error, 2 usage error, 3 a check ran and failed (e.g. a
//! corrupted block, or evidence `attest verify` rejects); `run` exits with its command's
//! status (125: layerpass failed, 130: interrupted).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod cli;

use cli::{Cli, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` shares the terminal with its command: only warnings unless asked.
    let default = if cli.is_run() { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("LAYERPASS_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    match cli.run() {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(3),
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("layerpass: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

//! The `layerpass-guest` command line: `serve` (the ttrpc server), the one-shot
//! commands `mount --plan`, `unmount` and `list` for init scripts and microVMs without a
//! host connection, and `run` (mount, run one process, unmount: the only way a command
//! runs in the guest; the ttrpc service has no exec). `main.rs` only calls [`main`].
//!
//! One-shot failures print `<Kind>: <message>` on stderr and exit with the kind's status
//! (`layerpass_protocols::status::Kind::exit_code`, table in docs/protocol.md).

mod args;
mod oneshot;
mod run;
mod serve;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use layerpass_protocols::status::Kind;

pub use self::args::{Cli, Command, PolicyArgs, RunArgs, ServeArgs, TransportKind};
pub use self::run::{Stage, StatusEvent};
use crate::error::{AgentError, Chain};
use crate::process::ProcessError;

/// A failed command: the protocol's kind and the whole message.
#[derive(Debug)]
pub struct Failure {
    /// What kind of failure (decides the exit status).
    pub kind: Kind,
    /// The message, naming what was wrong.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<AgentError> for Failure {
    fn from(err: AgentError) -> Self {
        Self::new(err.kind(), err.chain().to_string())
    }
}

impl From<ProcessError> for Failure {
    fn from(err: ProcessError) -> Self {
        use layerpass_protocols::status::HasKind;
        Self::new(err.kind(), Chain(&err).to_string())
    }
}

/// Runs the command line and returns the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{}: {}", failure.kind, failure.message);
            ExitCode::from(failure.kind.exit_code())
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => serve::serve(&args),
        Command::Mount(args) => oneshot::mount(&args),
        Command::Unmount(args) => oneshot::unmount(&args),
        Command::List(args) => oneshot::list(&args),
        Command::Run(args) => run::run(&args),
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAYERPASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests;

//! Command-line interface of the `layerpass` binary. `main.rs` only parses and reports.

mod api;
mod attest;
mod blk;
mod convert;
mod plan;
mod progress;
mod run;
mod serve;
mod verity;

use std::io::Write;

use clap::{Parser, Subcommand};

/// Exit status of a command that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A check ran and found a problem (e.g. a corrupted block).
    CheckFailed,
    /// `run`: the command's exit status (or 125 / 130, see `cli/run.rs`).
    Exit(u8),
}

/// layerpass: container image layers as verified EROFS disks for virtual machines.
#[derive(Debug, Parser)]
#[command(name = "layerpass", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attestation: reference values computed offline, initdata documents, checking a
    /// guest's evidence (event log and register).
    #[command(subcommand)]
    Attest(attest::Attest),
    /// Serve layer blobs and scratch disks to VMs over vhost-user-blk.
    #[command(subcommand)]
    Blk(blk::BlkCommand),
    /// Convert tar layers into reproducible EROFS images with dm-verity.
    #[command(subcommand)]
    Convert(convert::ConvertCommand),
    /// Print the guest's mount plan (for `layerpass-guest mount --plan`) for layer files.
    Plan(plan::PlanArgs),
    /// Run the daemon: the host API that exports containers' layers to VMs.
    Serve(serve::ServeArgs),
    /// Export a container's layers to a VM through the daemon.
    Export(api::ExportArgs),
    /// Undo an export (idempotent).
    Unexport(api::UnexportArgs),
    /// List the daemon's exports by sandbox.
    List(api::ListArgs),
    /// The daemon's configuration and counters.
    Status(api::StatusArgs),
    /// Run a container image's command in a microVM: layers verified in the guest, never
    /// unpacked.
    Run(run::RunArgs),
    /// Build and check dm-verity hash trees (veritysetup-compatible).
    #[command(subcommand)]
    Verity(verity::VerityCommand),
}

impl Cli {
    /// Whether the command is `run`.
    pub fn is_run(&self) -> bool {
        matches!(self.command, Command::Run(_))
    }

    /// Runs the parsed command.
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self.command {
            Command::Blk(cmd) => cmd.run(),
            Command::Convert(cmd) => cmd.run(),
            Command::Plan(args) => args.run(),
            Command::Verity(cmd) => cmd.run(),
            Command::Attest(cmd) => cmd.run(),
            Command::Serve(a) => a.run(),
            Command::Export(a) => a.run(),
            Command::Unexport(a) => a.run(),
            Command::List(a) => a.run(),
            Command::Status(a) => a.run(),
            Command::Run(a) => a.run(),
        }
    }
}

/// Writes one line of command output to stdout (the only place the CLI prints results).
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: a process serving hundreds of disks
/// holds several descriptors per connected disk (its socket, each ring's kick and call
/// eventfds, the frontend's memory fds), past the usual soft limit of 1024. Returns the limit
/// now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            return getrlimit(Resource::Nofile).current;
        }
    }
    l.current
}

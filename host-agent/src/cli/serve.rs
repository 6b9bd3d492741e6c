//! `layerpass serve`: the daemon. Runs until SIGTERM or SIGINT, then stops accepting API
//! calls, lets the calls under way finish, stops serving disks and exits; the exports stay
//! in the state and the next start serves them again.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use layerpass::api::ApiServer;
use layerpass::daemon::Daemon;
use layerpass::daemon::config::{Config, DEFAULT_CONFIG_PATH};

use super::Outcome;

/// How long a stopping daemon waits for the calls under way: an export's guest `Mount`
/// (300 s) and a little more.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(330);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; every key optional; see docs/daemon.md). Without it,
    /// /etc/layerpass/config.toml if it exists, else the defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The configuration a command uses: `--config`, else the default file if present.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p, true)?,
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false)?,
    })
}

impl ServeArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let config = load_config(self.config.as_ref())?;
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .context("cannot install signal handlers")?;
        let api_socket = config.api_socket.clone();
        let fds = super::raise_fd_limit();
        tracing::debug!(open_files_limit = fds, "open-file limit");
        let daemon = Arc::new(Daemon::start(config)?);
        let server = ApiServer::start(daemon.clone(), &api_socket)?;
        let status = daemon.status()?;
        tracing::info!(
            exports = status.exports,
            resumed = status.resumed,
            state = %daemon.config().state_dir.display(),
            "layerpass daemon ready"
        );
        if let Some(sig) = signals.forever().next() {
            tracing::info!(
                signal = sig,
                "stopping: finishing the calls under way; exports are kept"
            );
        }
        // No new connections; new exports refused; the calls under way finish (an export
        // may wait for its guest up to 300 s) before the connections close.
        let server = server.stop_accepting();
        if !daemon.wait_idle(DRAIN_TIMEOUT) {
            tracing::warn!(
                "calls still under way after {DRAIN_TIMEOUT:?}; stopping anyway (the next start \
                 sweeps what they made)"
            );
        }
        server.shutdown();
        daemon.shutdown();
        Ok(Outcome::Success)
    }
}

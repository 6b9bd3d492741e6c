//! `serve`: the ttrpc server until SIGTERM or SIGINT.

use std::sync::Arc;

use layerpass_protocols::status::Kind;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::info;

use super::Failure;
use super::args::ServeArgs;
use crate::error::Chain;
use crate::server::{self, ServeError, Stop};

fn failure(e: &ServeError) -> Failure {
    let kind = match e {
        ServeError::Transport(_) => Kind::InvalidArgument,
        ServeError::OpenPort { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Kind::NotFound
        }
        ServeError::Bridge(_) => Kind::Unavailable,
        _ => Kind::Internal,
    };
    Failure::new(kind, Chain(e).to_string())
}

/// Serves until a termination signal (exit 0) or until the virtio-serial bridge fails.
pub fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let transport = args.transport()?;
    let agent = Arc::new(args.policy.measured_agent()?);
    let run_dir = agent.config().run_dir.clone();
    let running = server::start(agent, &transport, &run_dir).map_err(|e| failure(&e))?;

    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Failure::new(Kind::Internal, format!("cannot handle signals: {e}")))?;
    let stopper = running.stopper();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = stopper.send(Stop::Signal(signal));
            }
        })
        .map_err(|e| {
            Failure::new(
                Kind::Internal,
                format!("cannot spawn the signal thread: {e}"),
            )
        })?;

    let stop = running.wait();
    if let Stop::Signal(signal) = &stop {
        info!(signal, "stopping");
    }
    running.shutdown();
    match stop {
        Stop::Signal(_) => Ok(()),
        Stop::Bridge(e) => Err(failure(&ServeError::Bridge(e))),
    }
}

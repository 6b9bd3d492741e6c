//! The ttrpc server: the `GuestAgent` service ([`service`]) over a shared agent, on the
//! transport chosen on the command line ([`transport`]; virtio-serial through
//! [`serial`]). The only module of the agent that knows ttrpc.

pub mod convert;
pub mod peer;
pub mod serial;
pub mod service;
pub mod status;
pub mod transport;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;

use layerpass_protocols::ttrpc;
use tracing::{error, info};

use self::serial::{BridgeError, SerialBridge};
pub use self::service::GuestAgentService;
pub use self::transport::{DEFAULT_VSOCK_PORT, Transport, TransportError};
use crate::agent::Agent;
use crate::error::Chain;

/// Idle ttrpc worker threads kept per server (requests beyond these get new threads).
const WORKERS_MIN: usize = 2;
const WORKERS_DEFAULT: usize = 4;
const WORKERS_MAX: usize = 32;

/// Why the server could not start or stopped. The messages leave the cause out: report
/// the error with [`Chain`], which adds it once.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport's address is not usable.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// ttrpc could not listen on the address.
    #[error("cannot listen on {transport}")]
    Listen {
        /// The transport.
        transport: String,
        /// What ttrpc reported.
        #[source]
        source: ttrpc::Error,
    },
    /// The virtio-serial port cannot be opened.
    #[error("cannot open virtio-serial port {}", device.display())]
    OpenPort {
        /// The port's device.
        device: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A socket's permissions cannot be set.
    #[error("cannot restrict {} to its owner", path.display())]
    Permissions {
        /// The socket.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server's threads could not start.
    #[error("cannot start the ttrpc server on {transport}")]
    Start {
        /// The transport.
        transport: String,
        /// What ttrpc reported.
        #[source]
        source: ttrpc::Error,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn the {what} thread")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The virtio-serial bridge failed: the host can no longer reach the agent.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

/// Something that ends [`RunningServer::wait`].
#[derive(Debug)]
pub enum Stop {
    /// A termination signal arrived (its number).
    Signal(i32),
    /// The virtio-serial bridge failed.
    Bridge(BridgeError),
}

/// A started server; dropping it without [`RunningServer::shutdown`] leaves the ttrpc
/// threads running until the process exits.
pub struct RunningServer {
    server: ttrpc::Server,
    transport: Transport,
    /// A socket file the server created (removed at shutdown).
    socket: Option<PathBuf>,
    stops: Receiver<Stop>,
    stop_tx: Sender<Stop>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("transport", &self.transport)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

fn restrict(path: &Path) -> Result<(), ServeError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServeError::Permissions {
            path: path.to_owned(),
            source,
        }
    })
}

fn bind_unix(socket: &Path, transport: &Transport) -> Result<ttrpc::Server, ServeError> {
    transport::check_socket_path(socket)?;
    transport::clear_stale_socket(socket)?;
    let server = listen_private(socket).map_err(|source| ServeError::Listen {
        transport: transport.to_string(),
        source,
    })?;
    restrict(socket)?;
    Ok(server)
}

/// Binds a ttrpc server to the unix socket `socket` under umask 0177, so the socket is
/// created 0600 and never world-accessible, not even between `bind` and a `chmod`. The
/// umask is the process's (the server starts before any request thread; the overlay
/// mount threads unshare theirs) and is restored after.
pub fn listen_private(socket: &Path) -> Result<ttrpc::Server, ttrpc::Error> {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let server = ttrpc::Server::new().bind(&format!("unix://{}", socket.display()));
    rustix::process::umask(old);
    server
}

/// The private socket the virtio-serial bridge connects to.
pub fn bridge_socket(run_dir: &Path, device: &Path) -> PathBuf {
    let name = device
        .file_name()
        .map_or_else(|| "port".into(), |n| n.to_string_lossy().into_owned());
    run_dir.join(format!("serial-{name}.sock"))
}

/// Starts serving `agent` on `transport`. For virtio-serial, `run_dir` holds the bridge's
/// private socket.
pub fn start(
    agent: Arc<Agent>,
    transport: &Transport,
    run_dir: &Path,
) -> Result<RunningServer, ServeError> {
    let (stop_tx, stops) = mpsc::channel();
    let (server, socket) = match transport {
        Transport::Vsock { port, allowed_cids } => {
            let server = ttrpc::Server::new()
                .bind(&Transport::vsock_address(*port))
                .map_err(|source| ServeError::Listen {
                    transport: transport.to_string(),
                    source,
                })?
                .set_accept_hook(peer::VsockPeers::new(allowed_cids.clone()));
            (server, None)
        }
        Transport::Unix { socket } => (bind_unix(socket, transport)?, Some(socket.clone())),
        Transport::VirtioSerial { device } => {
            let port = OpenOptions::new()
                .read(true)
                .write(true)
                .open(device)
                .map_err(|source| ServeError::OpenPort {
                    device: device.clone(),
                    source,
                })?;
            let socket = bridge_socket(run_dir, device);
            let server = bind_unix(&socket, transport)?;
            let mut bridge = SerialBridge::new(port, device, &socket);
            let tx = stop_tx.clone();
            thread::Builder::new()
                .name("serial-bridge".into())
                .spawn(move || {
                    if let Err(e) = bridge.run() {
                        error!("{}", Chain(&e));
                        let _ = tx.send(Stop::Bridge(e));
                    }
                })
                .map_err(|source| ServeError::Thread {
                    what: "virtio-serial bridge",
                    source,
                })?;
            (server, Some(socket))
        }
    };
    let mut server = server
        .register_service(GuestAgentService::methods(agent))
        .set_thread_count_min(WORKERS_MIN)
        .set_thread_count_default(WORKERS_DEFAULT)
        .set_thread_count_max(WORKERS_MAX);
    server.start().map_err(|source| ServeError::Start {
        transport: transport.to_string(),
        source,
    })?;
    info!(%transport, "serving");
    Ok(RunningServer {
        server,
        transport: transport.clone(),
        socket,
        stops,
        stop_tx,
    })
}

impl RunningServer {
    /// A sender that ends [`RunningServer::wait`] (the command line connects signals to it).
    pub fn stopper(&self) -> Sender<Stop> {
        self.stop_tx.clone()
    }

    /// Blocks until a stop arrives and returns it.
    pub fn wait(&self) -> Stop {
        // `self` holds a sender, so the channel never disconnects.
        self.stops.recv().unwrap_or(Stop::Signal(0))
    }

    /// Stops accepting, closes the connections and removes the socket file.
    pub fn shutdown(self) {
        self.server.shutdown();
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
        info!(transport = %self.transport, "stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_private_socket_is_created_owner_only_before_any_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let before = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let server = listen_private(&socket).unwrap();
        // The process umask is back as it was.
        let after = rustix::process::umask(before);
        assert_eq!(after.bits(), 0o022);
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        drop(server);
    }
}

//! The API socket: bound 0600 (under umask 0177, so it is never reachable by others, not
//! even between bind and chmod), a stale socket replaced (the state lock proves no other
//! daemon uses it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerpass_protocols::ttrpc;

use super::service::HostService;
use crate::daemon::Daemon;

/// The API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiServeError {
    /// The socket cannot be prepared.
    #[error("API socket {}: cannot {what}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// ttrpc cannot bind or start.
    #[error("API socket {}: {source}", path.display())]
    Ttrpc {
        /// The socket.
        path: PathBuf,
        /// The error.
        #[source]
        source: ttrpc::Error,
    },
    /// The path does not fit a unix socket address.
    #[error("API socket path {} is longer than 107 bytes", path.display())]
    TooLong {
        /// The socket.
        path: PathBuf,
    },
}

/// The running API server.
pub struct ApiServer {
    server: ttrpc::Server,
    socket: PathBuf,
    listening: bool,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds `socket` and starts answering with `daemon`.
    pub fn start(daemon: Arc<Daemon>, socket: &Path) -> Result<Self, ApiServeError> {
        let io = |what| {
            let path = socket.to_owned();
            move |source| ApiServeError::Io { path, what, source }
        };
        if socket.as_os_str().len() > crate::daemon::naming::MAX_SOCKET_PATH {
            return Err(ApiServeError::TooLong {
                path: socket.to_owned(),
            });
        }
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(io("create its directory"))?;
        }
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove the stale socket")(e)),
        }
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = ttrpc::Server::new().bind(&format!("unix://{}", socket.display()));
        rustix::process::umask(old);
        let ttrpc_err = |source| ApiServeError::Ttrpc {
            path: socket.to_owned(),
            source,
        };
        let mut server = bound
            .map_err(ttrpc_err)?
            .register_service(HostService::methods(daemon));
        server.start().map_err(ttrpc_err)?;
        tracing::info!(socket = %socket.display(), "host API listening");
        Ok(Self {
            server,
            socket: socket.to_owned(),
            listening: true,
        })
    }

    /// Stops accepting connections (the ones open may still call) and removes the socket.
    #[must_use]
    pub fn stop_accepting(mut self) -> Self {
        if self.listening {
            self.server = self.server.stop_listen();
            self.listening = false;
        }
        let _ = std::fs::remove_file(&self.socket);
        self
    }

    /// Stops accepting if not done yet, closes the connections, removes the socket.
    pub fn shutdown(self) {
        let stopped = self.stop_accepting();
        stopped.server.disconnect();
    }
}

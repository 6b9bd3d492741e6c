//! A [`Server`] on its own thread, stopped and joined when dropped: what a daemon that
//! serves many disks (and the tests) hold per disk.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::VhostError;
use super::server::{Server, ServerHandle};

/// A running server thread. Dropping it stops the server and waits for the thread.
#[derive(Debug)]
pub struct ServerThread {
    socket: PathBuf,
    handle: ServerHandle,
    thread: Option<JoinHandle<Result<(), VhostError>>>,
}

impl ServerThread {
    /// Runs `server` (already bound: its socket accepts connections when this returns) on a
    /// thread named after the socket.
    pub fn spawn(server: Server) -> Result<Self, VhostError> {
        let socket = server.socket().to_owned();
        let handle = server.handle();
        let name = socket
            .file_name()
            .map_or_else(|| "vhost".to_owned(), |n| n.to_string_lossy().into_owned());
        let thread = std::thread::Builder::new()
            .name(format!("vhost:{name}"))
            .spawn(move || server.run())
            .map_err(VhostError::Thread)?;
        Ok(Self {
            socket,
            handle,
            thread: Some(thread),
        })
    }

    /// The socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A handle that stops the server from elsewhere.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Stops the server and returns how its accept loop ended.
    pub fn stop(mut self) -> Result<(), VhostError> {
        self.handle.stop();
        self.join()
    }

    fn join(&mut self) -> Result<(), VhostError> {
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(VhostError::Panicked(self.socket.clone())),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.handle.stop();
        if let Err(e) = self.join() {
            tracing::warn!(socket = %self.socket.display(), error = %e, "server ended with an error");
        }
    }
}

//! Runs a layerpass vhost-user-blk server in-process for tests, stopped and joined on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use layerpass::export::Disk;
use layerpass::vhost::server::{Server, ServerHandle};

/// A server thread; dropping it stops the server and waits for the thread.
#[derive(Debug)]
pub struct ServerGuard {
    socket: PathBuf,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl ServerGuard {
    /// Serves `disk` on `socket` with `queues` queues.
    pub fn start(socket: &Path, disk: Arc<dyn Disk>, queues: usize) -> anyhow::Result<Self> {
        Self::start_with(Server::bind(socket, disk, queues)?)
    }

    /// Runs an already configured server.
    pub fn start_with(server: Server) -> anyhow::Result<Self> {
        let socket = server.socket().to_owned();
        let socket = socket.as_path();
        let handle = server.handle();
        let thread = std::thread::spawn(move || {
            if let Err(e) = server.run() {
                eprintln!("server ended with an error: {e:#}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self {
            socket: socket.to_owned(),
            handle,
            thread: Some(thread),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

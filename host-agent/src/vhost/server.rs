//! The listener: bound once, a fresh daemon and backend per connection, so a VMM can
//! disconnect and reconnect (QEMU `reconnect-ms`) and I/O goes on.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use super::backend::BlkBackend;
use super::error::VhostError;
use crate::export::Disk;

/// Default busy-poll after a batch: 20 µs. Measured on the 2-core test machine it lifts
/// 4 KiB QD1 reads from 0.97× to 2.9× and QD32 from 1.2× to 1.9× of qemu-storage-daemon
/// (docs/benchmarks.md); the cost is at most 20 µs of CPU per batch on an idle queue
/// (cloud-hypervisor polls 50 µs). `--poll-us 0` turns it off.
pub const DEFAULT_POLL: Duration = Duration::from_micros(20);

/// Serves one disk on one unix socket until [`ServerHandle::stop`].
pub struct Server {
    socket: PathBuf,
    disk: Arc<dyn Disk>,
    queues: usize,
    poll: Duration,
    listener: Listener,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    stop: AtomicBool,
    current: Mutex<Option<vhost_user_backend::ShutdownHandle>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket)
            .field("disk", &self.disk)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Server`] from another thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    socket: PathBuf,
    state: Arc<State>,
}

impl ServerHandle {
    /// Ends the current connection and the accept loop.
    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self
            .state
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            h.shutdown();
        }
        // Wake a blocked accept().
        let _ = UnixStream::connect(&self.socket);
    }
}

impl Server {
    /// Binds `socket` (replacing a stale socket file).
    pub fn bind(socket: &Path, disk: Arc<dyn Disk>, queues: usize) -> Result<Self, VhostError> {
        if !(1..=super::config::MAX_QUEUES).contains(&queues) {
            return Err(VhostError::Queues(queues));
        }
        let listener = Listener::new(socket, true).map_err(|source| VhostError::Listen {
            path: socket.to_owned(),
            source,
        })?;
        Ok(Self {
            socket: socket.to_owned(),
            disk,
            queues,
            poll: DEFAULT_POLL,
            listener,
            state: Arc::default(),
        })
    }

    /// How long queue workers busy-poll for more requests after a batch (0 turns it off).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The socket this server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            socket: self.socket.clone(),
            state: self.state.clone(),
        }
    }

    /// Accepts connections one after another until stopped. Each frontend connection is
    /// logged at info level with its number (1, 2, … for this server) when it starts, and
    /// with the number of requests served on it when it ends.
    pub fn run(mut self) -> Result<(), VhostError> {
        let name = format!("vhost-blk:{}", self.socket.display());
        let mut connection: u64 = 0;
        while !self.state.stop.load(Ordering::SeqCst) {
            let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
            let backend = Arc::new(BlkBackend::new(
                self.disk.clone(),
                mem.clone(),
                self.queues,
                self.poll,
            )?);
            let mut daemon = VhostUserDaemon::new(name.clone(), backend.clone(), mem)
                .map_err(|e| VhostError::Daemon(e.to_string()))?;
            if let Err(e) = daemon.start(&mut self.listener) {
                if self.state.stop.load(Ordering::SeqCst) {
                    break;
                }
                tracing::warn!(error = %e, "vhost-user connection failed to start");
                continue;
            }
            {
                // Checked under the lock `stop()` takes after setting the flag: either this
                // sees the flag or `stop()` sees the handle.
                let mut current = self
                    .state
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if self.state.stop.load(Ordering::SeqCst) {
                    // Most likely `stop()` waking the accept: no frontend.
                    drop(current);
                    daemon.request_shutdown();
                    let _ = daemon.wait();
                    backend.exit_workers();
                    break;
                }
                *current = daemon.shutdown_handle();
            }
            connection += 1;
            tracing::info!(socket = %self.socket.display(), connection, "frontend connected");
            let ended = daemon.wait();
            *self
                .state
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            backend.exit_workers();
            // Dropping the daemon joins the queue workers: the count below is final.
            drop(daemon);
            let requests = backend.requests_served();
            match ended {
                Ok(()) => tracing::info!(connection, requests, "frontend disconnected"),
                Err(e) => {
                    tracing::info!(error = %e, connection, requests, "frontend connection ended");
                }
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

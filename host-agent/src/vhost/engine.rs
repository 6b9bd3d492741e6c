//! The engine: every disk of a process served by one control thread and a fixed pool of queue
//! workers, so threads and idle CPU do not grow with the number of disks.
//!
//! [`Engine::serve`] binds a disk's socket and hands it to the control thread, which accepts
//! one frontend at a time per socket (a VMM may disconnect and reconnect, QEMU
//! `reconnect-ms`), reads its vhost-user messages ([`super::conn`]) and assigns each started
//! queue to a worker ([`super::worker`]). The [`Export`] it returns stops serving when dropped:
//! its connection ends, its queues stop, its socket file goes.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::epoll::Epoll;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::control;
use super::error::VhostError;
use super::worker::Pool;
use crate::export::Disk;

/// Default busy-poll of a queue after its last request: 20 µs. A driver that submits again
/// within it neither kicks nor waits for an epoll wakeup (docs/benchmarks.md has the
/// figures); an idle queue goes back to notifications after it, so an idle engine uses no
/// CPU. `--poll-us 0` turns polling off.
pub const DEFAULT_POLL: Duration = Duration::from_micros(20);

/// How the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Queue worker threads (at least 1).
    pub workers: usize,
    /// Busy-poll of a queue after its last request (zero: never poll).
    pub poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            poll: DEFAULT_POLL,
        }
    }
}

/// One worker per CPU the process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Counters of one export, kept by the control thread.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Frontend connections accepted so far.
    pub connections: AtomicU64,
    /// Requests completed on connections that have ended.
    pub requests: AtomicU64,
    /// Whether a frontend is connected now.
    pub connected: AtomicBool,
}

/// A command for the control thread.
pub(super) enum Command {
    Add {
        id: u64,
        socket: PathBuf,
        listener: UnixListener,
        disk: Arc<dyn Disk>,
        queues: usize,
        stats: Arc<ExportStats>,
        done: SyncSender<io::Result<()>>,
    },
    Remove {
        id: u64,
        done: SyncSender<()>,
    },
    Stop,
}

/// What the API and the control thread share.
pub(super) struct Shared {
    pub epoll: Epoll,
    pub wake: EventFd,
    /// Commands, and whether the control thread still takes them.
    pub commands: Mutex<(Vec<Command>, bool)>,
}

impl Shared {
    /// Queues a command; `false` when the control thread has ended.
    fn send(&self, c: Command) -> bool {
        let mut q = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        if !q.1 {
            return false;
        }
        q.0.push(c);
        drop(q);
        if let Err(e) = self.wake.write(1) {
            tracing::error!(error = %e, "cannot wake the vhost control thread");
        }
        true
    }
}

/// The running engine. Dropping it ends every export and joins its threads.
pub struct Engine {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    control: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    config: EngineConfig,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the control thread and `config.workers` queue workers.
    pub fn start(config: EngineConfig) -> Result<Self, VhostError> {
        let pool = Arc::new(Pool::start(config.workers, config.poll).map_err(VhostError::Thread)?);
        let shared = Arc::new(Shared {
            epoll: Epoll::new().map_err(VhostError::Thread)?,
            wake: EventFd::new(EFD_NONBLOCK).map_err(VhostError::Thread)?,
            commands: Mutex::new((Vec::new(), true)),
        });
        let (s, p) = (shared.clone(), pool.clone());
        let control = std::thread::Builder::new()
            .name("vhost-control".into())
            .spawn(move || control::run(&s, &p))
            .map_err(VhostError::Thread)?;
        Ok(Self {
            shared,
            pool,
            control: Some(control),
            next_id: AtomicU64::new(1),
            config,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Threads the engine runs: the control thread and the queue workers.
    pub fn threads(&self) -> usize {
        1 + self.pool.workers()
    }

    /// Queues started by frontends and waiting for kicks, over all disks.
    pub fn running_queues(&self) -> usize {
        self.pool.queues()
    }

    /// Serves `disk` on `queues` queues (1..=8) at `socket` (a stale socket file there is
    /// replaced). The socket accepts connections when this returns.
    pub fn serve(
        &self,
        socket: &Path,
        disk: Arc<dyn Disk>,
        queues: usize,
    ) -> Result<Export, VhostError> {
        if !(1..=super::config::MAX_QUEUES).contains(&queues) {
            return Err(VhostError::Queues(queues));
        }
        let listener = bind(socket).map_err(|source| VhostError::Listen {
            path: socket.to_owned(),
            source,
        })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ExportStats::default());
        let (done, wait) = sync_channel(1);
        let sent = self.shared.send(Command::Add {
            id,
            socket: socket.to_owned(),
            listener,
            disk,
            queues,
            stats: stats.clone(),
            done,
        });
        let added = if sent { wait.recv().ok() } else { None };
        match added {
            Some(Ok(())) => Ok(Export {
                id,
                socket: socket.to_owned(),
                shared: self.shared.clone(),
                stats,
                removed: false,
            }),
            Some(Err(source)) => {
                let _ = std::fs::remove_file(socket);
                Err(VhostError::Register {
                    path: socket.to_owned(),
                    source,
                })
            }
            None => {
                let _ = std::fs::remove_file(socket);
                Err(VhostError::Stopped)
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.send(Command::Stop);
        if let Some(t) = self.control.take()
            && t.join().is_err()
        {
            tracing::error!("the vhost control thread panicked");
        }
    }
}

/// Binds a listening socket at `path`, replacing a stale socket file (never another file).
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// One disk being served. Dropping it (or [`Export::stop`]) ends its connection, stops its
/// queues (no request of it runs afterwards) and removes its socket file.
pub struct Export {
    id: u64,
    socket: PathBuf,
    shared: Arc<Shared>,
    stats: Arc<ExportStats>,
    removed: bool,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("socket", &self.socket)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Export {
    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its counters.
    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    /// Stops serving; returns when no request of this disk runs any more.
    pub fn stop(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        let (done, wait) = sync_channel(1);
        if self.shared.send(Command::Remove { id: self.id, done }) {
            let _ = wait.recv();
        }
        // Otherwise the engine has stopped, and its control thread removed every export and
        // socket file as it ended (a file there now belongs to someone else).
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        self.remove();
    }
}

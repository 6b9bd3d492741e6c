//! The control thread: one epoll over every export's listening socket and frontend
//! connection, and the engine's command eventfd.
//!
//! Per export one frontend is served at a time: while it is connected the listening socket
//! leaves the epoll set (a second connection waits in the backlog, as with QEMU's
//! `reconnect-ms`), and it comes back when the frontend goes. The vhost crate's handler reads
//! a message with blocking reads (retrying on `EAGAIN`), so it is called only once the whole
//! message has arrived ([`frame`]): a frontend that sends half a message, or stops reading
//! its replies, holds up nobody. A frontend sending without pause gets [`BUDGET`] messages
//! per turn, then the others have theirs. Queue requests never pass through here.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use vhost::vhost_user::{BackendReqHandler, Error as ProtoError};
use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};

use super::conn::Conn;
use super::engine::{Command, ExportStats, Shared};
use super::frame::{self, Ready};
use super::worker::Pool;
use crate::export::Disk;
use crate::warn_limited;

/// Messages of one frontend handled before the next frontend's turn.
pub const BUDGET: usize = 32;
/// The epoll token of the command eventfd; an export `id` has tokens `2 id` (listener) and
/// `2 id + 1` (connection).
const WAKE: u64 = 0;
const EVENTS: usize = 64;

type Handler = BackendReqHandler<Mutex<Conn>>;

/// A frontend being served.
struct Live {
    handler: Handler,
    /// The connection's socket, to look at its queues (a second descriptor of it).
    probe: UnixStream,
    conn: Arc<Mutex<Conn>>,
    number: u64,
}

/// One disk's socket.
struct Entry {
    socket: PathBuf,
    listener: UnixListener,
    disk: Arc<dyn Disk>,
    queues: usize,
    stats: Arc<ExportStats>,
    live: Option<Live>,
}

struct Loop<'a> {
    shared: &'a Shared,
    pool: &'a Arc<Pool>,
    entries: HashMap<u64, Entry>,
    /// Connections that used up their budget with messages still queued (edge-triggered:
    /// no event comes for those).
    again: Vec<u64>,
}

/// Runs until [`Command::Stop`]; everything it still serves is closed on the way out.
pub(super) fn run(shared: &Shared, pool: &Arc<Pool>) {
    let mut l = Loop {
        shared,
        pool,
        entries: HashMap::new(),
        again: Vec::new(),
    };
    if let Err(e) = l.ctl(ControlOperation::Add, shared.wake.as_raw_fd(), WAKE) {
        tracing::error!(error = %e, "vhost control: cannot watch the command eventfd");
        l.finish();
        return;
    }
    let mut events = vec![EpollEvent::default(); EVENTS];
    loop {
        let timeout = if l.again.is_empty() { -1 } else { 0 };
        let Some(n) = super::worker::wait(&shared.epoll, timeout, &mut events, "vhost control")
        else {
            continue;
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == WAKE {
                if !l.commands() {
                    l.finish();
                    return;
                }
            } else if token % 2 == 0 {
                l.accept(token / 2);
            } else {
                let hup = ev
                    .event_set()
                    .intersects(EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR);
                l.messages(token / 2, hup);
            }
        }
        for id in std::mem::take(&mut l.again) {
            l.messages(id, false);
        }
    }
}

impl Loop<'_> {
    fn ctl(&self, op: ControlOperation, fd: i32, token: u64) -> io::Result<()> {
        self.shared
            .epoll
            .ctl(op, fd, EpollEvent::new(EventSet::IN, token))
    }

    /// Takes the queued commands; `false` on Stop.
    fn commands(&mut self) -> bool {
        let _ = self.shared.wake.read();
        let commands = std::mem::take(
            &mut self
                .shared
                .commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0,
        );
        for c in commands {
            match c {
                Command::Add {
                    id,
                    socket,
                    listener,
                    disk,
                    queues,
                    stats,
                    done,
                } => {
                    let r = self.ctl(ControlOperation::Add, listener.as_raw_fd(), 2 * id);
                    if r.is_ok() {
                        self.entries.insert(
                            id,
                            Entry {
                                socket,
                                listener,
                                disk,
                                queues,
                                stats,
                                live: None,
                            },
                        );
                    }
                    let _ = done.send(r);
                }
                Command::Remove { id, done } => {
                    if let Some(e) = self.entries.remove(&id) {
                        self.close(e);
                    }
                    let _ = done.send(());
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Ends every export: the engine is stopping. Later commands are refused.
    fn finish(&mut self) {
        let pending = {
            let mut q = self
                .shared
                .commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.1 = false;
            std::mem::take(&mut q.0)
        };
        for c in pending {
            match c {
                Command::Add {
                    done,
                    listener,
                    socket,
                    ..
                } => {
                    drop(listener);
                    let _ = std::fs::remove_file(&socket);
                    let _ = done.send(Err(io::Error::other("the engine is stopping")));
                }
                Command::Remove { done, .. } => {
                    let _ = done.send(());
                }
                Command::Stop => {}
            }
        }
        for (_, e) in std::mem::take(&mut self.entries) {
            self.close(e);
        }
    }

    /// Stops an export's connection and queues, closes its listener, removes its socket file.
    fn close(&self, mut e: Entry) {
        if let Some(live) = e.live.take() {
            self.end(&e, &live, "disk removed");
        }
        let _ = self.shared.epoll.ctl(
            ControlOperation::Delete,
            e.listener.as_raw_fd(),
            EpollEvent::default(),
        );
        if let Err(err) = std::fs::remove_file(&e.socket)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %e.socket.display(), error = %err, "cannot remove the socket file");
        }
    }

    fn accept(&mut self, id: u64) {
        let shared = self.shared;
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.live.is_some() {
            return;
        }
        let stream = match e.listener.accept() {
            Ok((s, _)) => s,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) => {
                warn_limited!(socket = %e.socket.display(), error = %err, "cannot accept a frontend");
                return;
            }
        };
        match start(stream, &e.disk, e.queues, self.pool.clone()) {
            Ok((handler, probe, conn)) => {
                let fd = handler.as_raw_fd();
                if let Err(err) = shared.epoll.ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(
                        EventSet::IN | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED,
                        2 * id + 1,
                    ),
                ) {
                    tracing::error!(error = %err, "cannot watch a frontend connection");
                    return;
                }
                let _ = shared.epoll.ctl(
                    ControlOperation::Delete,
                    e.listener.as_raw_fd(),
                    EpollEvent::default(),
                );
                let number = e.stats.connections.fetch_add(1, Ordering::Relaxed) + 1;
                e.stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(socket = %e.socket.display(), connection = number, "frontend connected");
                e.live = Some(Live {
                    handler,
                    probe,
                    conn,
                    number,
                });
                // Messages sent before the socket was watched raise no edge.
                self.again.push(id);
            }
            Err(err) => {
                warn_limited!(socket = %e.socket.display(), error = %err, "cannot set up a frontend connection");
            }
        }
    }

    /// Handles the frontend's whole messages, up to [`BUDGET`]. `hup`: the frontend has shut
    /// its end, so a partial message will never be whole.
    fn messages(&mut self, id: u64, hup: bool) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(live) = e.live.as_mut() else {
            return;
        };
        let mut handled = 0;
        let ended = loop {
            if handled == BUDGET {
                self.again.push(id);
                break None;
            }
            match frame::ready(&live.probe) {
                Ok(Ready::Message) => {}
                Ok(Ready::Partial | Ready::Empty) if hup => {
                    break Some("peer disconnected".to_owned());
                }
                Ok(Ready::Partial | Ready::Empty) => break None,
                Ok(Ready::Closed) => break Some("peer disconnected".to_owned()),
                Ok(Ready::Oversized(n)) => {
                    break Some(format!("a message announces {n} bytes of payload"));
                }
                Ok(Ready::NotReading(n)) => {
                    break Some(format!("the frontend leaves {n} bytes of replies unread"));
                }
                Err(err) => break Some(err.to_string()),
            }
            handled += 1;
            match live.handler.handle_request() {
                Ok(()) => {}
                Err(err) if is_transport(&err) => break Some(err.to_string()),
                Err(err) => {
                    let unanswered = live
                        .conn
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take_unanswered();
                    if unanswered {
                        // It waits for a reply the vhost crate did not send.
                        break Some(format!("a request expecting a reply was refused: {err}"));
                    }
                    // The frontend was told (REPLY_ACK) and the connection stays usable.
                    warn_limited!(socket = %e.socket.display(), error = %err, "vhost-user request refused");
                }
            }
        };
        if let Some(why) = ended {
            let live = e.live.take();
            if let (Some(e), Some(live)) = (self.entries.get(&id), live) {
                self.end(e, &live, &why);
                if let Err(err) = self.ctl(ControlOperation::Add, e.listener.as_raw_fd(), 2 * id) {
                    tracing::error!(socket = %e.socket.display(), error = %err, "cannot listen again");
                }
            }
        }
    }

    /// Ends a frontend connection: its queues stop before its socket closes.
    fn end(&self, e: &Entry, live: &Live, why: &str) {
        let _ = self.shared.epoll.ctl(
            ControlOperation::Delete,
            live.handler.as_raw_fd(),
            EpollEvent::default(),
        );
        let requests = {
            let mut c = live.conn.lock().unwrap_or_else(PoisonError::into_inner);
            c.stop_all();
            c.requests_served()
        };
        e.stats.requests.fetch_add(requests, Ordering::Relaxed);
        e.stats.connected.store(false, Ordering::Relaxed);
        tracing::info!(socket = %e.socket.display(), connection = live.number, requests, reason = why, "frontend disconnected");
    }
}

/// A connection's handler (on a blocking socket: it reads only whole messages) and a second
/// descriptor of its socket to look at the queues with.
fn start(
    stream: UnixStream,
    disk: &Arc<dyn Disk>,
    queues: usize,
    pool: Arc<Pool>,
) -> io::Result<(Handler, UnixStream, Arc<Mutex<Conn>>)> {
    stream.set_nonblocking(false)?;
    let probe = stream.try_clone()?;
    let conn = Conn::new(disk, queues, pool).map_err(io::Error::other)?;
    let conn = Arc::new(Mutex::new(conn));
    Ok((
        BackendReqHandler::from_stream(stream, conn.clone()),
        probe,
        conn,
    ))
}

/// Errors after which the connection cannot go on: the socket failed, the byte stream is out
/// of step, or the frontend sent a request of a protocol feature it did not negotiate (the
/// vhost crate refuses it before anything else, and some of those expect a reply nobody
/// sends). SET_VRING_ENABLE without PROTOCOL_FEATURES (`InactiveFeature`) expects none.
fn is_transport(e: &ProtoError) -> bool {
    !matches!(
        e,
        ProtoError::InvalidParam
            | ProtoError::InvalidOperation(_)
            | ProtoError::InactiveFeature(_)
            | ProtoError::ReqHandlerError(_)
            | ProtoError::FeatureMismatch
    )
}

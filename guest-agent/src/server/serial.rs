//! A virtio-serial port as a ttrpc transport.
//!
//! ttrpc's server only accepts connections on a listening socket, and a virtio-serial
//! port is a character device: one byte stream, no accept. So the server listens on a
//! private unix socket (`<run dir>/serial-<name>.sock`, directory mode 0700) and this
//! bridge copies bytes between the port and one connection to it:
//!
//! ```text
//! host ──virtio-serial──▶ /dev/virtio-ports/NAME ◀─bridge─▶ unix socket ◀── ttrpc server
//! ```
//!
//! A host session starts with the first bytes the host sends. The guest kernel reports
//! the host end as closed by a `read` returning 0 (`host_connected` is false); the bridge
//! then closes its connection, the ttrpc server drops that connection's state, and the
//! next host connection starts a fresh one. While no host is connected the bridge polls
//! the port every [`IDLE_POLL`].
//!
//! The port's `write` blocks while no host is connected (the virtio console driver waits
//! for `host_connected`), so before each write the bridge polls the port: `POLLHUP` means
//! the host is gone and the rest of that session's responses are dropped, so they never
//! reach the next host. (A host that disconnects between the poll and the write leaves
//! that one write blocked until a host connects again: the window is one `poll` call.)
//! A host that reconnects before the bridge wakes up is not noticed at all: its bytes
//! continue the previous ttrpc connection, which the server accepts.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use tracing::{debug, info, warn};

/// How often the bridge looks for a host while none is connected.
pub const IDLE_POLL: Duration = Duration::from_millis(100);
const BUF: usize = 64 * 1024;

/// What the bridge needs of a port: a byte stream it can read and write from two
/// threads. Implemented for the port's [`File`] (and for [`UnixStream`], which tests use
/// as a port).
pub trait Port: Read + Write + AsFd + Send + Sized + 'static {
    /// A second handle on the same port.
    fn try_clone_port(&self) -> io::Result<Self>;
}

impl Port for File {
    fn try_clone_port(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

impl Port for UnixStream {
    fn try_clone_port(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

/// Copies bytes between a virtio-serial port and connections to the server's socket.
#[derive(Debug)]
pub struct SerialBridge<P> {
    port: P,
    device: PathBuf,
    socket: PathBuf,
}

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Reading or writing the port failed (the port was unplugged, for instance).
    #[error("virtio-serial port {}", device.display())]
    Port {
        /// The port's device.
        device: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server's socket refused the bridge.
    #[error("cannot connect to the server socket {}", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl<P: Port> SerialBridge<P> {
    /// A bridge between the opened port (`device` is its path, for messages) and the
    /// server listening on `socket`.
    pub fn new(port: P, device: &Path, socket: &Path) -> Self {
        Self {
            port,
            device: device.to_owned(),
            socket: socket.to_owned(),
        }
    }

    fn port_err(&self, source: io::Error) -> BridgeError {
        BridgeError::Port {
            device: self.device.clone(),
            source,
        }
    }

    /// Serves host sessions one after the other, forever (or until the port fails).
    pub fn run(&mut self) -> Result<(), BridgeError> {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match self.port.read(&mut buf) {
                Ok(0) => {
                    thread::sleep(IDLE_POLL);
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.port_err(e)),
            };
            info!(device = %self.device.display(), "host connected");
            let stream =
                UnixStream::connect(&self.socket).map_err(|source| BridgeError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
            self.session(stream, &mut buf, n)?;
            info!(device = %self.device.display(), "host disconnected");
        }
    }

    /// One host session: `buf[..first]` are the bytes that started it.
    fn session(
        &mut self,
        stream: UnixStream,
        buf: &mut [u8],
        first: usize,
    ) -> Result<(), BridgeError> {
        let mut to_server = stream;
        let mut from_server = to_server
            .try_clone()
            .map_err(|source| BridgeError::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        let mut to_port = self.port.try_clone_port().map_err(|e| self.port_err(e))?;
        let device = self.device.clone();
        // Server → host. Ends when the connection is shut down below, the server closes
        // it, or the host goes away.
        thread::Builder::new()
            .name("serial-to-host".into())
            .spawn(move || {
                if let Err(e) = copy_to_host(&mut from_server, &mut to_port) {
                    debug!(device = %device.display(), "server → host copy ended: {e}");
                }
            })
            .map_err(|e| self.port_err(e))?;

        let mut n = first;
        let result = loop {
            if let Err(e) = to_server.write_all(&buf[..n]) {
                warn!("the ttrpc server closed the bridge connection: {e}");
                break Ok(());
            }
            n = match self.port.read(buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => break Err(self.port_err(e)),
            };
        };
        // Ends the server's connection (and the copy thread's read).
        let _ = to_server.shutdown(Shutdown::Both);
        result
    }
}

/// Whether the host end of `port` is connected, waiting until the port is writable or
/// the host is gone.
fn host_writable(port: &impl AsFd) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(port, PollFlags::OUT)];
    loop {
        match poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let events = fds[0].revents();
    Ok(!events.intersects(PollFlags::HUP | PollFlags::ERR) && events.contains(PollFlags::OUT))
}

/// Copies the server's responses to the port until either end closes; stops (dropping
/// what is left) when the host goes away.
fn copy_to_host<P: Port>(from_server: &mut UnixStream, port: &mut P) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from_server.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut done = 0;
        while done < n {
            if !host_writable(port)? {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the host disconnected; dropping the session's responses",
                ));
            }
            match port.write(&buf[done..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => done += w,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn a_host_session_reaches_the_server_and_ends_with_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("server.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (mut host, guest_port) = UnixStream::pair().unwrap();
        let mut bridge = SerialBridge::new(guest_port, Path::new("/dev/virtio-ports/t"), &socket);
        thread::spawn(move || bridge.run());

        host.write_all(b"ping").unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        conn.write_all(b"pong").unwrap();
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");

        // The host goes away: the bridge closes the server's connection.
        drop(host);
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn responses_for_a_host_that_left_are_dropped() {
        let (host, mut port) = UnixStream::pair().unwrap();
        assert!(host_writable(&port).unwrap());
        drop(host);
        assert!(!host_writable(&port).unwrap());
        let (mut server_end, mut bridge_end) = UnixStream::pair().unwrap();
        server_end.write_all(b"late response").unwrap();
        drop(server_end);
        let err = copy_to_host(&mut bridge_end, &mut port).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_missing_server_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("absent.sock");
        let (mut host, guest_port) = UnixStream::pair().unwrap();
        let mut bridge = SerialBridge::new(guest_port, Path::new("/dev/virtio-ports/t"), &socket);
        host.write_all(b"x").unwrap();
        let err = bridge.run().unwrap_err().to_string();
        assert!(err.contains("absent.sock"), "{err}");
    }
}

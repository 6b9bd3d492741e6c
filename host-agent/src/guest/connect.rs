//! Connecting to an endpoint: the socket, then for hybrid vsock the handshake, all
//! before one deadline.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tracing::debug;

use super::hvsock::{self, HandshakeError};
use super::{GuestEndpoint, GuestError, socket};

/// A deadline `timeout` from now; a timeout too large for an `Instant` is a year.
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

impl GuestEndpoint {
    /// A connected stream to the guest agent; connecting (and the hybrid vsock handshake)
    /// takes at most `timeout`.
    pub fn connect(&self, timeout: Duration) -> Result<OwnedFd, GuestError> {
        let deadline = deadline(timeout);
        let fd = match self {
            Self::Vsock { cid, port } => socket::vsock(*cid, *port, deadline),
            Self::HybridVsock { socket, .. } | Self::Serial { socket } | Self::Unix { socket } => {
                socket::unix(socket, deadline)
            }
        }
        .map_err(|e| self.connect_error(e, timeout))?;
        let fd = match self {
            Self::HybridVsock { port, .. } => {
                let mut stream = UnixStream::from(fd);
                hvsock::handshake(&mut stream, *port, deadline)
                    .map_err(|e| self.handshake_error(e, timeout))?;
                OwnedFd::from(stream)
            }
            _ => fd,
        };
        debug!(endpoint = %self, "connected to the guest agent");
        Ok(fd)
    }

    fn connect_error(&self, e: io::Error, timeout: Duration) -> GuestError {
        if e.kind() == io::ErrorKind::TimedOut {
            GuestError::Timeout {
                endpoint: self.to_string(),
                step: "connect",
                timeout,
            }
        } else {
            GuestError::Unreachable {
                endpoint: self.to_string(),
                source: e,
            }
        }
    }

    fn handshake_error(&self, e: HandshakeError, timeout: Duration) -> GuestError {
        match e {
            HandshakeError::TimedOut => GuestError::Timeout {
                endpoint: self.to_string(),
                step: "hybrid vsock handshake",
                timeout,
            },
            HandshakeError::Io(source) => GuestError::Unreachable {
                endpoint: self.to_string(),
                source,
            },
            HandshakeError::Refused(reply) => GuestError::Handshake {
                endpoint: self.to_string(),
                reply,
            },
        }
    }
}

//! Where the server listens: a vsock port, a virtio-serial port (bridged, see
//! [`super::serial`]) or a unix socket. Everything here is checked before the server
//! starts, and errors name the address.

use std::fmt;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The vsock port the agent listens on by default.
pub const DEFAULT_VSOCK_PORT: u32 = 1027;
/// Where the guest kernel (udev, or the init script) puts virtio-serial ports by name.
pub const VIRTIO_PORTS_DIR: &str = "/dev/virtio-ports";
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_UNIX_PATH: usize = 107;
/// `VMADDR_PORT_ANY`: not a port one can listen on by number.
const VSOCK_PORT_ANY: u32 = u32::MAX;
/// `VMADDR_CID_HOST`: the host, the only peer a vsock server accepts by default.
pub const VSOCK_CID_HOST: u32 = 2;

/// A transport the server can listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// AF_VSOCK, any local CID, this port; connections only from these peer CIDs.
    Vsock {
        /// The port.
        port: u32,
        /// Peer CIDs accepted (default: the host, CID 2); any other is closed at accept.
        allowed_cids: Vec<u32>,
    },
    /// A virtio-serial port's character device (one host connection at a time).
    VirtioSerial {
        /// `/dev/virtio-ports/NAME` (or another character device path).
        device: PathBuf,
    },
    /// A unix stream socket at this path.
    Unix {
        /// The socket's path.
        socket: PathBuf,
    },
}

/// A transport that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A vsock port that cannot be listened on.
    #[error("vsock port {port} is not usable: {reason}")]
    VsockPort {
        /// The port.
        port: u32,
        /// Why.
        reason: &'static str,
    },
    /// A virtio-serial port name that is not a name.
    #[error("virtio-serial port name {name:?} is not usable: {reason}")]
    PortName {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A unix socket path that cannot be bound.
    #[error("unix socket {}: {reason}", path.display())]
    SocketPath {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The socket path cannot be checked or cleared.
    #[error("unix socket {}: cannot {what}", path.display())]
    SocketIo {
        /// The path.
        path: PathBuf,
        /// What could not be done (`stat it`, `remove the stale socket`).
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The socket path exists and an agent answers on it.
    #[error("unix socket {} is in use by another server", path.display())]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
}

impl Transport {
    /// A vsock transport on `port` accepting only the host (CID 2).
    pub fn vsock(port: u32) -> Result<Self, TransportError> {
        Self::vsock_allowing(port, vec![VSOCK_CID_HOST])
    }

    /// A vsock transport on `port` accepting connections from `allowed_cids` only.
    pub fn vsock_allowing(port: u32, allowed_cids: Vec<u32>) -> Result<Self, TransportError> {
        if allowed_cids.is_empty() {
            return Err(TransportError::VsockPort {
                port,
                reason: "no peer CID is allowed",
            });
        }
        if port == VSOCK_PORT_ANY {
            return Err(TransportError::VsockPort {
                port,
                reason: "it is VMADDR_PORT_ANY",
            });
        }
        Ok(Self::Vsock { port, allowed_cids })
    }

    /// A virtio-serial transport: `name` is a port name (`layerpass.0`, found under
    /// `/dev/virtio-ports/`) or an absolute path to the character device.
    pub fn virtio_serial(name: &str) -> Result<Self, TransportError> {
        let bad = |reason| TransportError::PortName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.starts_with('/') {
            return Ok(Self::VirtioSerial {
                device: PathBuf::from(name),
            });
        }
        if name.contains('/') || name == "." || name == ".." {
            return Err(bad(
                "a port name has no '/' (give an absolute path instead)",
            ));
        }
        Ok(Self::VirtioSerial {
            device: Path::new(VIRTIO_PORTS_DIR).join(name),
        })
    }

    /// A unix socket transport at `path`.
    pub fn unix(path: &Path) -> Result<Self, TransportError> {
        check_socket_path(path)?;
        Ok(Self::Unix {
            socket: path.to_owned(),
        })
    }

    /// The ttrpc address for a vsock port, listening on any CID.
    pub fn vsock_address(port: u32) -> String {
        format!("vsock://-1:{port}")
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { port, allowed_cids } => {
                write!(f, "vsock port {port} (peer CIDs {allowed_cids:?})")
            }
            Self::VirtioSerial { device } => write!(f, "virtio-serial port {}", device.display()),
            Self::Unix { socket } => write!(f, "unix socket {}", socket.display()),
        }
    }
}

/// Checks that a unix socket can be bound at `path`: absolute, short enough for
/// `sun_path`, in an existing directory.
pub fn check_socket_path(path: &Path) -> Result<(), TransportError> {
    let bad = |reason: String| TransportError::SocketPath {
        path: path.to_owned(),
        reason,
    };
    if !path.is_absolute() {
        return Err(bad("the path is not absolute".into()));
    }
    let len = path.as_os_str().len();
    if len > MAX_UNIX_PATH {
        return Err(bad(format!(
            "the path is {len} bytes long, a unix socket path has at most {MAX_UNIX_PATH}"
        )));
    }
    match path.parent() {
        Some(dir) if dir.is_dir() => Ok(()),
        Some(dir) => Err(bad(format!("directory {} does not exist", dir.display()))),
        None => Err(bad("the path has no directory".into())),
    }
}

/// Makes `path` free for a new listening socket: a socket nobody answers on (left by a
/// crashed agent) is removed; a live one, or anything that is not a socket, is an error.
pub fn clear_stale_socket(path: &Path) -> Result<(), TransportError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TransportError::SocketIo {
                path: path.to_owned(),
                what: "stat it",
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(TransportError::SocketPath {
            path: path.to_owned(),
            reason: "it exists and is not a socket".into(),
        });
    }
    if UnixStream::connect(path).is_ok() {
        return Err(TransportError::SocketInUse {
            path: path.to_owned(),
        });
    }
    std::fs::remove_file(path).map_err(|source| TransportError::SocketIo {
        path: path.to_owned(),
        what: "remove the stale socket",
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn vsock_ports() {
        assert_eq!(
            Transport::vsock(DEFAULT_VSOCK_PORT).unwrap(),
            Transport::Vsock {
                port: 1027,
                allowed_cids: vec![VSOCK_CID_HOST]
            }
        );
        let err = Transport::vsock_allowing(1027, vec![])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "vsock port 1027 is not usable: no peer CID is allowed");
        assert_eq!(Transport::vsock_address(1027), "vsock://-1:1027");
        let err = Transport::vsock(u32::MAX).unwrap_err().to_string();
        assert_eq!(
            err,
            "vsock port 4294967295 is not usable: it is VMADDR_PORT_ANY"
        );
    }

    #[test]
    fn virtio_serial_names_and_paths() {
        assert_eq!(
            Transport::virtio_serial("layerpass.0").unwrap(),
            Transport::VirtioSerial {
                device: "/dev/virtio-ports/layerpass.0".into()
            }
        );
        assert_eq!(
            Transport::virtio_serial("/dev/vport0p1").unwrap(),
            Transport::VirtioSerial {
                device: "/dev/vport0p1".into()
            }
        );
        for bad in ["", "a/b", ".."] {
            let err = Transport::virtio_serial(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn unix_socket_paths_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("agent.sock");
        assert_eq!(
            Transport::unix(&ok).unwrap().to_string(),
            format!("unix socket {}", ok.display())
        );
        let err = Transport::unix(Path::new("agent.sock"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not absolute"), "{err}");
        let missing = dir.path().join("missing/agent.sock");
        let err = Transport::unix(&missing).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("missing"),
            "{err}"
        );
        let long = dir.path().join("x".repeat(120));
        let err = Transport::unix(&long).unwrap_err().to_string();
        assert!(err.contains("at most 107"), "{err}");
    }

    #[test]
    fn stale_sockets_are_removed_live_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        clear_stale_socket(&path).unwrap();

        let listener = UnixListener::bind(&path).unwrap();
        let err = clear_stale_socket(&path).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        drop(listener);
        clear_stale_socket(&path).unwrap();
        assert!(!path.exists());

        std::fs::write(&path, b"not a socket").unwrap();
        let err = clear_stale_socket(&path).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
    }
}

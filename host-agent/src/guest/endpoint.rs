//! Where the guest agent answers, as text: `vsock:CID:PORT`, `hvsock:PATH:PORT`,
//! `serial:PATH` or `unix:PATH`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::GuestError;

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;
/// `VMADDR_CID_ANY` / `VMADDR_PORT_ANY`: wildcards, not an address one can connect to.
const VSOCK_ANY: u32 = u32::MAX;

/// An address of the guest agent, seen from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEndpoint {
    /// `vsock:CID:PORT`: AF_VSOCK to the guest's CID (vhost-vsock: QEMU, Kata).
    Vsock {
        /// The guest's context id.
        cid: u32,
        /// The agent's port.
        port: u32,
    },
    /// `hvsock:PATH:PORT`: the unix socket of a hybrid vsock device (Cloud Hypervisor,
    /// Firecracker); the connection starts with `CONNECT <port>\n` → `OK <n>\n`.
    HybridVsock {
        /// The device's unix socket.
        socket: PathBuf,
        /// The agent's port in the guest.
        port: u32,
    },
    /// `serial:PATH`: the unix socket of a QEMU virtio-serial chardev (QEMU listens).
    Serial {
        /// The chardev's socket.
        socket: PathBuf,
    },
    /// `unix:PATH`: a unix socket the agent (or a proxy) listens on.
    Unix {
        /// The socket.
        socket: PathBuf,
    },
}

impl GuestEndpoint {
    /// The unix socket the host connects to, if any.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            Self::Vsock { .. } => None,
            Self::HybridVsock { socket, .. } | Self::Serial { socket } | Self::Unix { socket } => {
                Some(socket)
            }
        }
    }
}

fn parse_err(text: &str, reason: impl Into<String>) -> GuestError {
    GuestError::Parse {
        text: text.to_owned(),
        reason: reason.into(),
    }
}

fn parse_u32(text: &str, what: &str, value: &str) -> Result<u32, GuestError> {
    let n = value
        .parse::<u32>()
        .ok()
        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| parse_err(text, format!("bad {what} {value:?}: not a decimal u32")))?;
    if n == VSOCK_ANY {
        return Err(parse_err(
            text,
            format!("bad {what} {value:?}: {n} is the vsock wildcard"),
        ));
    }
    Ok(n)
}

fn parse_path(text: &str, path: &str) -> Result<PathBuf, GuestError> {
    if path.is_empty() {
        return Err(parse_err(text, "empty path"));
    }
    if path.len() > MAX_SOCKET_PATH {
        return Err(parse_err(
            text,
            format!(
                "path is {} bytes long, a unix socket path has at most {MAX_SOCKET_PATH}",
                path.len()
            ),
        ));
    }
    if path.contains('\0') {
        return Err(parse_err(text, "path contains a NUL byte"));
    }
    Ok(PathBuf::from(path))
}

impl FromStr for GuestEndpoint {
    type Err = GuestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(parse_err(
                text,
                "no scheme (vsock:, hvsock:, serial: or unix:)",
            ));
        };
        match scheme {
            "vsock" => {
                let (cid, port) = rest
                    .split_once(':')
                    .ok_or_else(|| parse_err(text, "expected vsock:CID:PORT"))?;
                Ok(Self::Vsock {
                    cid: parse_u32(text, "CID", cid)?,
                    port: parse_u32(text, "port", port)?,
                })
            }
            "hvsock" => {
                // The path may hold ':'; the port is after the last one.
                let (path, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| parse_err(text, "expected hvsock:PATH:PORT"))?;
                Ok(Self::HybridVsock {
                    socket: parse_path(text, path)?,
                    port: parse_u32(text, "port", port)?,
                })
            }
            "serial" => Ok(Self::Serial {
                socket: parse_path(text, rest)?,
            }),
            "unix" => Ok(Self::Unix {
                socket: parse_path(text, rest)?,
            }),
            other => Err(parse_err(
                text,
                format!("unknown scheme {other:?} (vsock, hvsock, serial or unix)"),
            )),
        }
    }
}

impl fmt::Display for GuestEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Self::HybridVsock { socket, port } => write!(f, "hvsock:{}:{port}", socket.display()),
            Self::Serial { socket } => write!(f, "serial:{}", socket.display()),
            Self::Unix { socket } => write!(f, "unix:{}", socket.display()),
        }
    }
}

impl serde::Serialize for GuestEndpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.socket().is_some_and(|p| p.to_str().is_none()) {
            return Err(serde::ser::Error::custom(format!(
                "guest endpoint {self} has a socket path that is not UTF-8"
            )));
        }
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GuestEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for (text, endpoint) in [
            ("vsock:3:1027", GuestEndpoint::Vsock { cid: 3, port: 1027 }),
            (
                "vsock:4294967294:0",
                GuestEndpoint::Vsock {
                    cid: u32::MAX - 1,
                    port: 0,
                },
            ),
            (
                "hvsock:/run/vc/vm/kata.hvsock:1024",
                GuestEndpoint::HybridVsock {
                    socket: "/run/vc/vm/kata.hvsock".into(),
                    port: 1024,
                },
            ),
            (
                "hvsock:/run/a:b/v.sock:5",
                GuestEndpoint::HybridVsock {
                    socket: "/run/a:b/v.sock".into(),
                    port: 5,
                },
            ),
            (
                "serial:/run/vm/agent.serial",
                GuestEndpoint::Serial {
                    socket: "/run/vm/agent.serial".into(),
                },
            ),
            (
                "unix:relative/agent.sock",
                GuestEndpoint::Unix {
                    socket: "relative/agent.sock".into(),
                },
            ),
            (
                &format!("unix:/{}", "x".repeat(106)),
                GuestEndpoint::Unix {
                    socket: format!("/{}", "x".repeat(106)).into(),
                },
            ),
        ] {
            let parsed: GuestEndpoint = text.parse().unwrap();
            assert_eq!(parsed, endpoint, "{text}");
            assert_eq!(parsed.to_string(), text);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(
                serde_json::from_str::<GuestEndpoint>(&json).unwrap(),
                parsed
            );
        }
    }

    #[test]
    fn parse_errors_name_the_text_and_the_reason() {
        let long = format!("unix:/{}", "x".repeat(107));
        for (text, reason) in [
            ("", "no scheme"),
            ("/run/agent.sock", "no scheme"),
            ("tcp:1.2.3.4:5", "unknown scheme \"tcp\""),
            ("VSOCK:3:1027", "unknown scheme \"VSOCK\""),
            ("vsock:3", "expected vsock:CID:PORT"),
            ("vsock:x:1027", "bad CID \"x\""),
            ("vsock:-1:1027", "bad CID \"-1\""),
            ("vsock:+3:1027", "bad CID \"+3\""),
            ("vsock:4294967296:1027", "bad CID \"4294967296\""),
            ("vsock:4294967295:1027", "vsock wildcard"),
            ("vsock:3:", "bad port \"\""),
            ("vsock:3:1027:1", "bad port \"1027:1\""),
            (
                "vsock:3:4294967295",
                "bad port \"4294967295\": 4294967295 is the vsock wildcard",
            ),
            ("hvsock:/run/x.sock", "expected hvsock:PATH:PORT"),
            ("hvsock:1024", "expected hvsock:PATH:PORT"),
            ("hvsock::1024", "empty path"),
            ("hvsock:/run/x.sock:p", "bad port \"p\""),
            ("serial:", "empty path"),
            ("unix:", "empty path"),
            ("unix:/a\0b", "NUL"),
            (&long, "108 bytes long, a unix socket path has at most 107"),
        ] {
            let err = text.parse::<GuestEndpoint>().unwrap_err();
            assert!(matches!(err, GuestError::Parse { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{text:?}")) && msg.contains(reason),
                "{text}: {msg}"
            );
        }
        let err = serde_json::from_str::<GuestEndpoint>("\"tcp:x\"").unwrap_err();
        assert!(err.to_string().contains("unknown scheme"), "{err}");
    }

    #[test]
    fn non_utf8_paths_do_not_serialize() {
        use std::os::unix::ffi::OsStrExt;
        let endpoint = GuestEndpoint::Unix {
            socket: PathBuf::from(std::ffi::OsStr::from_bytes(b"/run/\xff.sock")),
        };
        assert!(serde_json::to_string(&endpoint).is_err());
    }
}

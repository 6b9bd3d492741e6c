//! A client of the CoCo attestation agent's `ExtendRuntimeMeasurement` ttrpc RPC
//! (service `attestation_agent.AttestationAgentService`), which extends a runtime
//! measurement register with the event `"<domain> <operation> <content>"` and appends it
//! to the agent's event log (AAEL).
//!
//! The event is checked before anything is sent ([`validate_event`]): the AAEL format
//! separates its three fields by spaces, so the domain and the operation are non-empty
//! printable ASCII without whitespace, and the content is printable ASCII (spaces allowed,
//! no line feed). Every call, the connection included, waits at most the client's timeout.
//! An answer outside the protocol's result enum is an error, never [`MeasurementResult::Ok`].
//!
//! See docs/attestation.md, "Attestation-agent client".

use std::fmt;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use layerpass_protocols::aa::attestation_agent as pb;
use layerpass_protocols::aa::attestation_agent_ttrpc::AttestationAgentServiceClient;
use layerpass_protocols::ttrpc;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

/// The attestation agent's socket in the guest (the agent's `--attestation_sock`, given
/// as `unix://` followed by this path).
pub const DEFAULT_SOCKET: &str =
    "/run/confidential-containers/attestation-agent/attestation-agent.sock";

/// The longest domain or operation sent, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The longest content sent, in bytes: a layer's canonical JSON is a few hundred bytes;
/// the bound keeps event-log lines (which a verifier reads) small.
pub const MAX_CONTENT_LEN: usize = 16 * 1024;

/// While the agent's listen queue is full, how long to wait before trying to connect again.
const CONNECT_RETRY: Duration = Duration::from_millis(5);

/// The longest timeout ttrpc can carry (it sends it as signed nanoseconds).
const MAX_TIMEOUT: Duration = Duration::from_nanos(i64::MAX.unsigned_abs());

/// The agent's answer to `ExtendRuntimeMeasurement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeasurementResult {
    /// `OK`: the register was extended and the event logged.
    Ok,
    /// `NOT_SUPPORTED`: the platform's attester cannot extend runtime measurements.
    NotSupported,
    /// `NOT_ENABLED`: the agent's event log is disabled (`aa.toml`,
    /// `[eventlog_config] enable_eventlog`).
    NotEnabled,
}

impl MeasurementResult {
    /// The result's name in the protocol (`OK`, `NOT_SUPPORTED`, `NOT_ENABLED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::NotEnabled => "NOT_ENABLED",
        }
    }

    /// The result a wire value stands for; `None` outside the enum.
    fn from_wire(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::Ok),
            1 => Some(Self::NotSupported),
            2 => Some(Self::NotEnabled),
            _ => None,
        }
    }
}

impl fmt::Display for MeasurementResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `Domain`.
    Domain,
    /// `Operation`.
    Operation,
    /// `Content`.
    Content,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Domain => "domain",
            Self::Operation => "operation",
            Self::Content => "content",
        })
    }
}

/// Why a field of the event cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The field is empty.
    #[error("it is empty")]
    Empty,
    /// The field is longer than the bound.
    #[error("it is {len} bytes long, more than {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A line feed, which would end the event-log line.
    #[error("it holds a line feed at byte {offset}")]
    LineFeed {
        /// The byte offset.
        offset: usize,
    },
    /// A space or other whitespace in the domain or the operation, which would shift the
    /// event's space-separated fields.
    #[error("it holds whitespace {found:?} at byte {offset}")]
    Whitespace {
        /// The byte offset.
        offset: usize,
        /// The character.
        found: char,
    },
    /// A character outside printable ASCII (0x20 to 0x7e).
    #[error("it holds the non-printable character {found:?} at byte {offset}")]
    NotPrintable {
        /// The byte offset.
        offset: usize,
        /// The character.
        found: char,
    },
}

/// A failed connection or call. The messages leave the cause out: report the error with
/// [`Chain`](crate::error::Chain), which adds it once.
#[derive(Debug, thiserror::Error)]
pub enum AaError {
    /// A zero timeout, which ttrpc would take as "wait forever".
    #[error("the attestation agent client's timeout must not be zero")]
    ZeroTimeout,
    /// Nothing at the socket's path: the attestation agent is not running (or not yet).
    #[error("no attestation agent socket at {}", path.display())]
    SocketMissing {
        /// The socket's path.
        path: PathBuf,
    },
    /// The socket exists but cannot be connected to (refused, not a socket, permissions).
    #[error("cannot connect to the attestation agent at {}", path.display())]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The agent did not accept the connection in time (its listen queue stayed full).
    #[error("the attestation agent at {} did not accept a connection within {timeout:?}", path.display())]
    ConnectTimeout {
        /// The socket's path.
        path: PathBuf,
        /// The client's timeout.
        timeout: Duration,
    },
    /// ttrpc could not start its client on the connection.
    #[error("cannot start a ttrpc client on the attestation agent's socket {}", path.display())]
    Client {
        /// The socket's path.
        path: PathBuf,
        /// What ttrpc reported.
        #[source]
        source: ttrpc::Error,
    },
    /// A field of the event cannot be sent; nothing was sent.
    #[error("invalid runtime measurement {field}")]
    InvalidField {
        /// The field.
        field: Field,
        /// Why.
        #[source]
        reason: Invalid,
    },
    /// The agent did not answer in time.
    #[error("the attestation agent did not answer ExtendRuntimeMeasurement within {timeout:?}")]
    Timeout {
        /// The client's timeout.
        timeout: Duration,
    },
    /// The agent answered with an error status (an agent without the RPC answers
    /// `NOT_FOUND` or `UNIMPLEMENTED`).
    #[error("the attestation agent failed ExtendRuntimeMeasurement with {code:?}: {message}")]
    Status {
        /// The ttrpc status code.
        code: ttrpc::Code,
        /// The agent's message.
        message: String,
    },
    /// The call failed on the connection (the agent went away, a malformed answer).
    #[error("ExtendRuntimeMeasurement failed")]
    Call {
        /// What ttrpc reported.
        #[source]
        source: ttrpc::Error,
    },
    /// The agent answered a result value outside the protocol's enum.
    #[error("the attestation agent answered the unknown runtime measurement result {value}")]
    UnknownResult {
        /// The value.
        value: i32,
    },
}

/// Checks an event before it is sent: `domain` and `operation` are 1 to [`MAX_NAME_LEN`]
/// bytes of printable ASCII without whitespace; `content` is at most [`MAX_CONTENT_LEN`]
/// bytes of printable ASCII (spaces allowed, no line feed). The error names the field.
pub fn validate_event(domain: &str, operation: &str, content: &str) -> Result<(), AaError> {
    let check = |field, value: &str, max, spaces| {
        check_field(value, max, spaces).map_err(|reason| AaError::InvalidField { field, reason })
    };
    check(Field::Domain, domain, MAX_NAME_LEN, false)?;
    check(Field::Operation, operation, MAX_NAME_LEN, false)?;
    check(Field::Content, content, MAX_CONTENT_LEN, true)
}

fn check_field(value: &str, max: usize, spaces: bool) -> Result<(), Invalid> {
    if value.len() > max {
        return Err(Invalid::TooLong {
            len: value.len(),
            max,
        });
    }
    if !spaces && value.is_empty() {
        return Err(Invalid::Empty);
    }
    // Printable ASCII is ' '..='~'; the space is allowed only where `spaces` says so.
    let bad = value
        .char_indices()
        .find(|&(_, c)| !(matches!(c, '!'..='~') || (spaces && c == ' ')));
    match bad {
        None => Ok(()),
        Some((offset, '\n')) => Err(Invalid::LineFeed { offset }),
        Some((offset, found)) if !spaces && found.is_whitespace() => {
            Err(Invalid::Whitespace { offset, found })
        }
        Some((offset, found)) => Err(Invalid::NotPrintable { offset, found }),
    }
}

/// A connection to the attestation agent. Cheap to share: calls from several threads go
/// over the one connection. If the agent restarts, calls fail with [`AaError::Call`];
/// connect again.
pub struct AaClient {
    client: AttestationAgentServiceClient,
    path: PathBuf,
    timeout: Duration,
}

impl fmt::Debug for AaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AaClient")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AaClient {
    /// Connects to the agent's unix socket at `path` (for the real agent,
    /// [`DEFAULT_SOCKET`]). The connection and every call after it wait at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, AaError> {
        if timeout.is_zero() {
            return Err(AaError::ZeroTimeout);
        }
        let timeout = timeout.min(MAX_TIMEOUT);
        let fd = connect_unix(path, timeout)?;
        // The ttrpc client owns the descriptor from here on and closes it on drop.
        let client = ttrpc::Client::new(fd.into_raw_fd()).map_err(|source| AaError::Client {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            client: AttestationAgentServiceClient::new(client),
            path: path.to_owned(),
            timeout,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The timeout of every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls `ExtendRuntimeMeasurement` with the event `"<domain> <operation> <content>"`
    /// on the register `register_index` (`None`: the agent's configured one, PCR 17 by
    /// default). The event is checked first ([`validate_event`]); an invalid one is never
    /// sent. `NOT_SUPPORTED` and `NOT_ENABLED` are answers, not errors: the caller decides
    /// what they mean for the mount.
    pub fn extend_runtime_measurement(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register_index: Option<u64>,
    ) -> Result<MeasurementResult, AaError> {
        validate_event(domain, operation, content)?;
        let mut req = pb::ExtendRuntimeMeasurementRequest::new();
        domain.clone_into(&mut req.Domain);
        operation.clone_into(&mut req.Operation);
        content.clone_into(&mut req.Content);
        req.RegisterIndex = register_index;
        let started = Instant::now();
        let response = self
            .client
            .extend_runtime_measurement(ttrpc::context::with_duration(self.timeout), &req)
            .map_err(|e| self.call_error(e, started.elapsed()))?;
        let value = response.Result.value();
        let result = MeasurementResult::from_wire(value).ok_or(AaError::UnknownResult { value })?;
        tracing::debug!(domain, operation, ?register_index, %result, "runtime measurement");
        Ok(result)
    }

    /// Classifies a failed call. ttrpc reports its own timeout as an untyped error, but it
    /// returns it only once the whole timeout has passed, and any other failure of a call
    /// that has not yet timed out ends the call earlier.
    fn call_error(&self, error: ttrpc::Error, elapsed: Duration) -> AaError {
        match error {
            ttrpc::Error::RpcStatus(status) => AaError::Status {
                code: status.code(),
                message: status.message,
            },
            ttrpc::Error::Others(_) if elapsed >= self.timeout => AaError::Timeout {
                timeout: self.timeout,
            },
            source => AaError::Call { source },
        }
    }
}

/// Connects a blocking unix stream socket to `path`, waiting at most `timeout` while the
/// listener's queue is full (a blocking `connect` would wait for as long as it stays
/// full; a non-blocking one fails with `EAGAIN` and is tried again).
fn connect_unix(path: &Path, timeout: Duration) -> Result<OwnedFd, AaError> {
    let io_error = |e: Errno| AaError::Connect {
        path: path.to_owned(),
        source: e.into(),
    };
    let addr = SocketAddrUnix::new(path).map_err(io_error)?;
    let deadline = Instant::now() + timeout;
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(io_error)?;
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => {
                rustix::io::ioctl_fionbio(&fd, false).map_err(io_error)?;
                return Ok(fd);
            }
            Err(Errno::AGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(AaError::ConnectTimeout {
                        path: path.to_owned(),
                        timeout,
                    });
                }
                thread::sleep(left.min(CONNECT_RETRY));
            }
            Err(Errno::NOENT) => {
                return Err(AaError::SocketMissing {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io_error(e)),
        }
    }
}

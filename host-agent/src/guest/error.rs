use std::io;
use std::time::Duration;

use layerpass_protocols::status::{HasKind, Kind};
use layerpass_protocols::ttrpc;

/// Errors reaching or calling the guest agent. Messages leave the cause out: it is the
/// source.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// An endpoint's text is not valid.
    #[error("guest endpoint {text:?} is not valid: {reason}")]
    Parse {
        /// The text as given.
        text: String,
        /// Why.
        reason: String,
    },
    /// The endpoint cannot be connected to.
    #[error("cannot reach the guest agent at {endpoint}")]
    Unreachable {
        /// The endpoint (`vsock:3:1027`, ...).
        endpoint: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Connecting or the hybrid vsock handshake took longer than the timeout.
    #[error("{step} to the guest agent at {endpoint} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// `connect` or `hybrid vsock handshake`.
        step: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The hybrid vsock device did not answer `OK <n>` to `CONNECT <port>`.
    #[error("hybrid vsock {endpoint} refused the connection: reply {reply:?}")]
    Handshake {
        /// The endpoint.
        endpoint: String,
        /// The reply line as received (at most 64 bytes, lossy UTF-8).
        reply: String,
    },
    /// A ttrpc client cannot be started on the connection.
    #[error("cannot start a ttrpc client for {endpoint}")]
    Client {
        /// The endpoint.
        endpoint: String,
        /// What ttrpc reported.
        #[source]
        source: ttrpc::Error,
    },
    /// A call failed: the agent's status, or `Unavailable` when the transport failed.
    #[error("guest agent at {endpoint}: {kind}: {message}")]
    Call {
        /// The endpoint.
        endpoint: String,
        /// The status's kind.
        kind: Kind,
        /// The agent's message.
        message: String,
    },
}

impl HasKind for GuestError {
    fn kind(&self) -> Kind {
        match self {
            Self::Parse { .. } => Kind::InvalidArgument,
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Handshake { .. }
            | Self::Client { .. } => Kind::Unavailable,
            Self::Call { kind, .. } => *kind,
        }
    }
}

//! A client of the host API: what `layerpass export|unexport|list|status` and the tests
//! call. Errors keep the server's kind, so the CLI can exit with the matching status.

use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layerpass_protocols::status::{HasKind, Kind};
use layerpass_protocols::ttrpc;
use layerpass_protocols::v1::host as pb;
use layerpass_protocols::v1::host_ttrpc::HostAgentClient;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The daemon cannot be reached.
    #[error("cannot reach the layerpass daemon at {}: {source} (is `layerpass serve` running?)", socket.display())]
    Connect {
        /// The API socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Call {
        /// Its kind.
        kind: Kind,
        /// Its message.
        message: String,
    },
}

impl HasKind for ApiError {
    fn kind(&self) -> Kind {
        match self {
            Self::Connect { .. } => Kind::Unavailable,
            Self::Call { kind, .. } => *kind,
        }
    }
}

/// One connection to the daemon.
pub struct HostClient {
    client: HostAgentClient,
    timeout: Duration,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How long a call may take by default: an export may convert an image and wait for the
/// guest agent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl HostClient {
    /// Connects to the API socket.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self, ApiError> {
        let stream = UnixStream::connect(socket).map_err(|source| ApiError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
        let client = ttrpc::Client::new(stream.into_raw_fd()).map_err(|e| ApiError::Connect {
            socket: socket.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            client: HostAgentClient::new(client),
            timeout,
        })
    }

    fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_duration(self.timeout)
    }

    /// `Export`.
    pub fn export(&self, req: &pb::ExportRequest) -> Result<pb::ExportResponse, ApiError> {
        self.client.export(self.ctx(), req).map_err(call)
    }

    /// `Unexport`.
    pub fn unexport(
        &self,
        sandbox: &str,
        container: &str,
    ) -> Result<pb::UnexportResponse, ApiError> {
        let mut req = pb::UnexportRequest::new();
        req.sandbox_id = sandbox.to_owned();
        req.container_id = container.to_owned();
        self.client.unexport(self.ctx(), &req).map_err(call)
    }

    /// `List`.
    pub fn list(&self, sandbox: Option<&str>) -> Result<pb::HostListResponse, ApiError> {
        let mut req = pb::HostListRequest::new();
        req.sandbox_id = sandbox.unwrap_or_default().to_owned();
        self.client.list(self.ctx(), &req).map_err(call)
    }

    /// `Status`.
    pub fn status(&self) -> Result<pb::HostStatusResponse, ApiError> {
        self.client
            .status(self.ctx(), &pb::HostStatusRequest::new())
            .map_err(call)
    }
}

#[allow(clippy::needless_pass_by_value, reason = "used as map_err(call)")]
fn call(e: ttrpc::Error) -> ApiError {
    let (kind, message) = Kind::from_ttrpc(&e);
    ApiError::Call { kind, message }
}

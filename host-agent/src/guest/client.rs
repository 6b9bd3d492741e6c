//! The `GuestAgent` ttrpc client on a connection to an endpoint.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::time::Duration;

use layerpass_protocols::status::Kind;
use layerpass_protocols::ttrpc;
use layerpass_protocols::v1::guest as pb;
use layerpass_protocols::v1::guest_ttrpc::GuestAgentClient;

use super::{GuestEndpoint, GuestError};

/// How long a call waits for its reply unless [`GuestConnection::with_call_timeout`]
/// says otherwise: longer than the agent's default wait for a disk (10 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One ttrpc connection to the guest agent.
pub struct GuestConnection {
    endpoint: GuestEndpoint,
    client: GuestAgentClient,
    call_timeout: Duration,
}

impl std::fmt::Debug for GuestConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestConnection")
            .field("endpoint", &self.endpoint)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl GuestConnection {
    /// Connects to `endpoint` within `timeout` ([`GuestEndpoint::connect`]); calls then
    /// wait at most [`DEFAULT_CALL_TIMEOUT`].
    pub fn connect(endpoint: &GuestEndpoint, timeout: Duration) -> Result<Self, GuestError> {
        let fd = endpoint.connect(timeout)?;
        let client = match ttrpc::Client::new(fd.as_raw_fd()) {
            Ok(client) => {
                // The client owns the descriptor from here on and closes it on drop.
                let _ = fd.into_raw_fd();
                client
            }
            // ttrpc fails before taking the descriptor (its wake-up socket pair could not
            // be made): `fd` is still ours and is closed here.
            Err(source) => {
                return Err(GuestError::Client {
                    endpoint: endpoint.to_string(),
                    source,
                });
            }
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            client: GuestAgentClient::new(client),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// The same connection with calls waiting at most `timeout`.
    #[must_use]
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &GuestEndpoint {
        &self.endpoint
    }

    fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_duration(self.call_timeout)
    }

    fn failed(&self, err: &ttrpc::Error) -> GuestError {
        let (kind, message) = Kind::from_ttrpc(err);
        GuestError::Call {
            endpoint: self.endpoint.to_string(),
            kind,
            message,
        }
    }

    /// `Mount`: mounts one container's rootfs.
    pub fn mount(&self, req: &pb::MountRequest) -> Result<pb::MountResponse, GuestError> {
        self.client
            .mount(self.ctx(), req)
            .map_err(|e| self.failed(&e))
    }

    /// `Unmount`: unmounts a container's rootfs (idempotent in the agent).
    pub fn unmount(&self, container_id: &str) -> Result<(), GuestError> {
        let mut req = pb::UnmountRequest::new();
        container_id.clone_into(&mut req.container_id);
        self.client
            .unmount(self.ctx(), &req)
            .map(|_| ())
            .map_err(|e| self.failed(&e))
    }

    /// `List`: the mounted containers.
    pub fn list(&self) -> Result<Vec<pb::ContainerStatus>, GuestError> {
        self.client
            .list(self.ctx(), &pb::ListRequest::new())
            .map(|r| r.containers)
            .map_err(|e| self.failed(&e))
    }

    /// `Status`: the agent's counters and policy.
    pub fn status(&self) -> Result<pb::StatusResponse, GuestError> {
        self.client
            .status(self.ctx(), &pb::StatusRequest::new())
            .map_err(|e| self.failed(&e))
    }
}

//! A host-side client of the guest agent's `GuestAgent` ttrpc service over any connected
//! stream socket: the host end of a virtio-serial port (`VmGuard::connect_port`) or a
//! unix socket. Failed calls come back as `(Kind, message)` so tests can assert the code.

use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result};
use layerpass_protocols::status::Kind;
use layerpass_protocols::ttrpc;
use layerpass_protocols::v1::guest as pb;
use layerpass_protocols::v1::guest_ttrpc::GuestAgentClient;

/// The client: one ttrpc connection.
pub struct GuestClient {
    client: GuestAgentClient,
    timeout: Duration,
}

impl std::fmt::Debug for GuestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A call's outcome: the response, or the error's kind and message.
pub type CallResult<T> = std::result::Result<T, (Kind, String)>;

impl GuestClient {
    /// A client on a connected stream; every call waits at most `timeout`.
    pub fn new(stream: UnixStream, timeout: Duration) -> Result<Self> {
        // The ttrpc client owns the descriptor from here on and closes it on drop.
        let client = ttrpc::Client::new(stream.into_raw_fd())
            .context("cannot start a ttrpc client on the stream")?;
        Ok(Self {
            client: GuestAgentClient::new(client),
            timeout,
        })
    }

    fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_duration(self.timeout)
    }

    /// `Mount`.
    pub fn mount(&self, req: &pb::MountRequest) -> CallResult<pb::MountResponse> {
        self.client
            .mount(self.ctx(), req)
            .map_err(|e| Kind::from_ttrpc(&e))
    }

    /// `Unmount`.
    pub fn unmount(&self, container_id: &str) -> CallResult<()> {
        let mut req = pb::UnmountRequest::new();
        req.container_id = container_id.to_owned();
        self.client
            .unmount(self.ctx(), &req)
            .map(|_| ())
            .map_err(|e| Kind::from_ttrpc(&e))
    }

    /// `List`.
    pub fn list(&self) -> CallResult<Vec<pb::ContainerStatus>> {
        self.client
            .list(self.ctx(), &pb::ListRequest::new())
            .map(|r| r.containers)
            .map_err(|e| Kind::from_ttrpc(&e))
    }

    /// `Status`.
    pub fn status(&self) -> CallResult<pb::StatusResponse> {
        self.client
            .status(self.ctx(), &pb::StatusRequest::new())
            .map_err(|e| Kind::from_ttrpc(&e))
    }
}

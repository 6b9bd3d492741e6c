//! The `GuestAgent` ttrpc service over a shared [`Agent`]. Handlers are thin: convert the
//! request, call the agent, convert the result or map the error. The server holds no lock
//! of its own: ttrpc runs each request on a worker thread, and the agent locks per
//! container and per layer, so requests for different containers run in parallel.

use std::sync::Arc;

use layerpass_protocols::ttrpc::{self, TtrpcContext};
use layerpass_protocols::v1::guest as pb;
use layerpass_protocols::v1::guest_ttrpc;
use tracing::{info, warn};

use super::convert;
use super::status::rpc_error;
use crate::agent::Agent;
use crate::error::AgentError;

/// The ttrpc service implementation.
#[derive(Clone)]
pub struct GuestAgentService {
    agent: Arc<Agent>,
}

impl std::fmt::Debug for GuestAgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestAgentService").finish_non_exhaustive()
    }
}

impl GuestAgentService {
    /// A service answering with `agent`.
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }

    /// The service's methods, ready for `ttrpc::Server::register_service`.
    pub fn methods(
        agent: Arc<Agent>,
    ) -> std::collections::HashMap<String, Box<dyn ttrpc::MethodHandler + Send + Sync>> {
        guest_ttrpc::create_guest_agent(Arc::new(Self::new(agent)))
    }
}

fn failed(rpc: &str, err: &AgentError) -> ttrpc::Error {
    warn!(rpc, kind = %err.kind(), "{}", err.chain());
    rpc_error(err)
}

impl guest_ttrpc::GuestAgent for GuestAgentService {
    fn mount(
        &self,
        _ctx: &TtrpcContext,
        req: pb::MountRequest,
    ) -> ttrpc::Result<pb::MountResponse> {
        let _span = tracing::info_span!("rpc", method = "Mount", container_id = %req.container_id)
            .entered();
        let plan = convert::mount_plan(&req).map_err(|e| failed("Mount", &e))?;
        let result = self.agent.mount(&plan).map_err(|e| failed("Mount", &e))?;
        info!(rootfs = %result.rootfs.display(), layers = result.layers.len(), "mounted");
        Ok(convert::mount_response(&result))
    }

    fn unmount(
        &self,
        _ctx: &TtrpcContext,
        req: pb::UnmountRequest,
    ) -> ttrpc::Result<pb::UnmountResponse> {
        let _span =
            tracing::info_span!("rpc", method = "Unmount", container_id = %req.container_id)
                .entered();
        self.agent
            .unmount(&req.container_id)
            .map_err(|e| failed("Unmount", &e))?;
        info!("unmounted");
        Ok(pb::UnmountResponse::new())
    }

    fn list(&self, _ctx: &TtrpcContext, _req: pb::ListRequest) -> ttrpc::Result<pb::ListResponse> {
        Ok(convert::list_response(&self.agent.list()))
    }

    fn status(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::StatusRequest,
    ) -> ttrpc::Result<pb::StatusResponse> {
        Ok(convert::status_response(&self.agent.status()))
    }
}

//! The `HostAgent` service over a shared [`Daemon`]: convert, call, convert back; each error
//! becomes its kind's ttrpc code with the error's message.

use std::sync::Arc;

use layerpass_protocols::status::HasKind;
use layerpass_protocols::ttrpc::{self, TtrpcContext};
use layerpass_protocols::v1::host as pb;
use layerpass_protocols::v1::host_ttrpc;

use super::convert;
use crate::daemon::{Daemon, DaemonError};

/// The ttrpc service.
#[derive(Debug, Clone)]
pub struct HostService {
    daemon: Arc<Daemon>,
}

impl HostService {
    /// The service's methods for `ttrpc::Server::register_service`.
    pub fn methods(
        daemon: Arc<Daemon>,
    ) -> std::collections::HashMap<String, Box<dyn ttrpc::MethodHandler + Send + Sync>> {
        host_ttrpc::create_host_agent(Arc::new(Self { daemon }))
    }
}

fn failed(rpc: &str, e: &DaemonError) -> ttrpc::Error {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = s.source();
    }
    tracing::warn!(rpc, kind = %e.kind(), "{chain}");
    e.kind().to_ttrpc(chain)
}

impl host_ttrpc::HostAgent for HostService {
    fn export(
        &self,
        _ctx: &TtrpcContext,
        req: pb::ExportRequest,
    ) -> ttrpc::Result<pb::ExportResponse> {
        let _span = tracing::info_span!("rpc", method = "Export", sandbox = %req.sandbox_id, container = %req.container_id).entered();
        let spec = convert::export_spec(&req).map_err(|e| failed("Export", &e))?;
        let outcome = self
            .daemon
            .export(&spec)
            .map_err(|e| failed("Export", &e))?;
        Ok(convert::export_response(&outcome))
    }

    fn unexport(
        &self,
        _ctx: &TtrpcContext,
        req: pb::UnexportRequest,
    ) -> ttrpc::Result<pb::UnexportResponse> {
        let _span = tracing::info_span!("rpc", method = "Unexport", sandbox = %req.sandbox_id, container = %req.container_id).entered();
        let o = self
            .daemon
            .unexport(&req.sandbox_id, &req.container_id)
            .map_err(|e| failed("Unexport", &e))?;
        let mut out = pb::UnexportResponse::new();
        out.existed = o.existed;
        out.guest_error = o.guest_error.unwrap_or_default();
        Ok(out)
    }

    fn list(
        &self,
        _ctx: &TtrpcContext,
        req: pb::HostListRequest,
    ) -> ttrpc::Result<pb::HostListResponse> {
        let filter = (!req.sandbox_id.is_empty()).then_some(req.sandbox_id.as_str());
        Ok(convert::list_response(&self.daemon.list(filter)))
    }

    fn status(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::HostStatusRequest,
    ) -> ttrpc::Result<pb::HostStatusResponse> {
        let s = self.daemon.status().map_err(|e| failed("Status", &e))?;
        Ok(convert::status_response(self.daemon.config(), &s))
    }
}

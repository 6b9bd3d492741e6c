//! An in-test attestation agent: a ttrpc server speaking the agent's protocol (the
//! generated service, registered under the upstream method name written out by hand,
//! behind a handler that records the raw request) on a unix socket in a temporary
//! directory. Stopped, its threads joined, when dropped. Used by the client's tests and
//! by the agent's measurement tests.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layerpass_protocols::aa::attestation_agent as pb;
use layerpass_protocols::aa::attestation_agent_ttrpc::{
    AttestationAgentService, create_attestation_agent_service,
};
use layerpass_protocols::protobuf::EnumOrUnknown;
use layerpass_protocols::ttrpc::{self, Code, MethodHandler, TtrpcContext};

use super::AaClient;

/// The ttrpc method, written out from the upstream contract (not taken from the codegen).
pub(crate) const METHOD: &str =
    "/attestation_agent.AttestationAgentService/ExtendRuntimeMeasurement";
/// The clients' timeout.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// What the fake agent answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// This wire value of `Result`.
    Result(i32),
    /// An error status.
    Status(Code),
}

/// The agent's side: the generated service trait.
pub(crate) struct FakeAgent {
    pub(crate) answer: Answer,
    pub(crate) requests: Mutex<Vec<pb::ExtendRuntimeMeasurementRequest>>,
}

impl AttestationAgentService for FakeAgent {
    fn extend_runtime_measurement(
        &self,
        _ctx: &TtrpcContext,
        req: pb::ExtendRuntimeMeasurementRequest,
    ) -> ttrpc::Result<pb::ExtendRuntimeMeasurementResponse> {
        self.requests.lock().unwrap().push(req);
        match self.answer {
            Answer::Result(value) => {
                let mut response = pb::ExtendRuntimeMeasurementResponse::new();
                response.Result = EnumOrUnknown::from_i32(value);
                Ok(response)
            }
            Answer::Status(code) => Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                code,
                "event log is busy",
            ))),
        }
    }
}

/// A ttrpc request as it arrived, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) service: String,
    pub(crate) method: String,
    pub(crate) timeout_nano: i64,
    pub(crate) payload: Vec<u8>,
}

/// Records the raw request, then hands it to the generated handler.
pub(crate) struct Wire {
    pub(crate) inner: Box<dyn MethodHandler + Send + Sync>,
    pub(crate) seen: Arc<Mutex<Vec<Received>>>,
}

impl MethodHandler for Wire {
    fn handler(&self, ctx: TtrpcContext, req: ttrpc::Request) -> ttrpc::Result<()> {
        self.seen.lock().unwrap().push(Received {
            service: req.service.clone(),
            method: req.method.clone(),
            timeout_nano: req.timeout_nano,
            payload: req.payload.clone(),
        });
        self.inner.handler(ctx, req)
    }
}

/// A running fake agent; dropping it shuts the server down (its threads end) and removes
/// the directory with the socket.
pub(crate) struct FakeServer {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) socket: PathBuf,
    pub(crate) server: Option<ttrpc::Server>,
    /// Closed after the server's shutdown (fields drop after `Drop::drop`).
    _listener: UnixListener,
    pub(crate) agent: Arc<FakeAgent>,
    pub(crate) wire: Arc<Mutex<Vec<Received>>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

impl FakeServer {
    pub(crate) fn start(answer: Answer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("attestation-agent.sock");
        let agent = Arc::new(FakeAgent {
            answer,
            requests: Mutex::new(Vec::new()),
        });
        let mut generated = create_attestation_agent_service(agent.clone());
        let inner = generated
            .remove(METHOD)
            .expect("the generated service registers the upstream method name");
        assert!(
            generated.is_empty(),
            "only ExtendRuntimeMeasurement is declared"
        );
        let wire = Arc::new(Mutex::new(Vec::new()));
        let mut methods: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
        methods.insert(
            METHOD.to_owned(),
            Box::new(Wire {
                inner,
                seen: wire.clone(),
            }),
        );
        // The listener is ours, not ttrpc's: ttrpc 0.10's sync server never closes its
        // listening socket (nor its wake-up pipe's read end), even at shutdown.
        let listener = UnixListener::bind(&socket).unwrap();
        let mut server = ttrpc::Server::new()
            .add_listener(listener.as_raw_fd())
            .unwrap()
            .register_service(methods);
        server.start().unwrap();
        Self {
            dir,
            socket,
            server: Some(server),
            _listener: listener,
            agent,
            wire,
        }
    }

    pub(crate) fn client(&self) -> AaClient {
        AaClient::connect(&self.socket, TIMEOUT).unwrap()
    }

    pub(crate) fn requests(&self) -> Vec<pb::ExtendRuntimeMeasurementRequest> {
        self.agent.requests.lock().unwrap().clone()
    }

    pub(crate) fn wire(&self) -> Vec<Received> {
        self.wire.lock().unwrap().clone()
    }
}

//! The attestation-agent backend: each layer's event goes to the agent's
//! `ExtendRuntimeMeasurement` (the agent extends its register and appends the event to
//! its own log).
//!
//! `NOT_ENABLED` (the agent's event log is off) and `NOT_SUPPORTED` (the platform cannot
//! extend runtime measurements) are reported plainly: a warning and the status's
//! problem. In confidential mode they refuse the mount unless `--allow-unmeasured`; a
//! failed call (no agent, a timeout, an error status) refuses it in confidential mode
//! whatever the flag says. Outside confidential mode nothing refuses a mount.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::aa_client::{AaClient, AaError, MeasurementResult};
use super::layer;
use super::status::{MeasureStatus, StatusCell};
use super::{Backend, FailurePolicy};
use crate::error::Chain;
use crate::events::{LayerEvent, RecordError, Recorder};
use crate::sync::lock;

/// How long a call to the attestation agent (the connection included) may take.
pub const AA_TIMEOUT: Duration = Duration::from_secs(10);

/// Something that extends a runtime measurement: the attestation agent's client, or a
/// fake in tests.
pub trait RuntimeMeasurer: Send + Sync + fmt::Debug {
    /// `ExtendRuntimeMeasurement(domain, operation, content, register)`.
    fn extend(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register: Option<u64>,
    ) -> Result<MeasurementResult, AaError>;
}

impl RuntimeMeasurer for AaClient {
    fn extend(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register: Option<u64>,
    ) -> Result<MeasurementResult, AaError> {
        self.extend_runtime_measurement(domain, operation, content, register)
    }
}

/// The attestation agent at a socket, connected on first use and again after a failed
/// call (the agent may have restarted). A failed call is never repeated: the agent may
/// have extended the register before the connection broke.
#[derive(Debug)]
pub struct AaConnection {
    socket: PathBuf,
    timeout: Duration,
    client: Mutex<Option<AaClient>>,
}

impl AaConnection {
    /// Not connected yet.
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self {
            socket,
            timeout,
            client: Mutex::new(None),
        }
    }
}

impl RuntimeMeasurer for AaConnection {
    fn extend(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register: Option<u64>,
    ) -> Result<MeasurementResult, AaError> {
        let mut client = lock(&self.client);
        let connected = match client.take() {
            Some(c) => c,
            None => AaClient::connect(&self.socket, self.timeout)?,
        };
        let result = connected.extend_runtime_measurement(domain, operation, content, register);
        // Keep the connection unless it failed.
        if !matches!(result, Err(AaError::Call { .. } | AaError::Timeout { .. })) {
            *client = Some(connected);
        }
        result
    }
}

/// A `NOT_ENABLED` or `NOT_SUPPORTED` answer that refused a mount.
#[derive(Debug, thiserror::Error)]
#[error(
    "the attestation agent answered {result}: nothing was measured (pass --allow-unmeasured \
     to accept this in confidential mode)"
)]
pub struct Unmeasured {
    /// The answer.
    pub result: MeasurementResult,
}

/// Records each layer through a [`RuntimeMeasurer`].
#[derive(Debug)]
pub struct AaRecorder<M> {
    measurer: M,
    register: Option<u64>,
    policy: FailurePolicy,
    status: StatusCell,
}

impl<M: RuntimeMeasurer> AaRecorder<M> {
    /// Measures through `measurer` on `backend`'s register, failing as `policy` says.
    pub fn new(measurer: M, backend: &Backend, policy: FailurePolicy) -> Self {
        Self {
            measurer,
            register: backend.register().map(u64::from),
            policy,
            status: StatusCell::new(backend),
        }
    }

    /// The measurer.
    pub fn measurer(&self) -> &M {
        &self.measurer
    }

    fn record_one(&self, ev: &LayerEvent) -> Result<(), RecordError> {
        let what = || {
            format!(
                "measuring container {}'s layer {} through the attestation agent",
                ev.container_id, ev.root_hash
            )
        };
        let outcome = layer::event(ev)
            .map_err(|e| RecordError::new(what(), e))
            .and_then(|event| {
                self.measurer
                    .extend(
                        &event.domain,
                        &event.operation,
                        &event.content,
                        self.register,
                    )
                    .map_err(|e| RecordError::new(what(), e))
            });
        match outcome {
            Ok(MeasurementResult::Ok) => {
                self.status.measured();
                Ok(())
            }
            Ok(result) => {
                let problem = format!("{}: the attestation agent answered {result}", what());
                tracing::warn!(container = %ev.container_id, root_hash = %ev.root_hash, %result, "layer not measured");
                self.status.problem(problem);
                if self.policy.refuse_unmeasured {
                    Err(RecordError::new(what(), Unmeasured { result }))
                } else {
                    Ok(())
                }
            }
            Err(e) => {
                let problem = Chain(&e).to_string();
                tracing::warn!(container = %ev.container_id, error = %problem, "layer not measured");
                self.status.problem(problem);
                if self.policy.refuse_failures {
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl<M: RuntimeMeasurer> Recorder for AaRecorder<M> {
    /// One `ExtendRuntimeMeasurement` per layer, in order; the first refused one stops.
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError> {
        events.iter().try_for_each(|ev| self.record_one(ev))
    }

    fn measure_status(&self) -> Option<MeasureStatus> {
        Some(self.status.get())
    }
}

//! Runtime measurement of the layers the agent mounts: each layer of each mounted (and
//! unmounted) container becomes one event, `github.com/layerpass MountLayer <content>`
//! (or `UnmountLayer`), whose content is the layer's measurement in canonical JSON
//! (`layerpass_types::attest::LayerMeasurement`). A backend is a
//! [`Recorder`](crate::events::Recorder), so the agent hands it the events before a
//! mount returns, and undoes the mount when it refuses.
//!
//! - [`mode`]: `--measure auto|aa|tpm|log`, `--pcr`, and the rule that confidential
//!   mode never runs unmeasured unless `log` is chosen explicitly;
//! - [`aa`]: the attestation agent's `ExtendRuntimeMeasurement` ([`aa_client`]);
//! - [`tpm`]: a TPM PCR through `/dev/tpmrm0` and the event log `<run_dir>/eventlog`;
//! - [`status`]: what `Status` says about it.
//!
//! See docs/attestation.md, "Measurement backends".

pub mod aa;
pub mod aa_client;
pub mod layer;
pub mod mode;
pub mod status;
pub mod tpm;

use std::path::Path;

pub use self::mode::{Backend, DEFAULT_PCR, MeasureMode, MeasureOptions, ModeError};
pub use self::status::MeasureStatus;
use crate::events::{LayerEvent, RecordError, Recorder};

/// What a measuring failure does to the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// A failed measurement (no attestation agent, a TPM error) refuses the mount.
    pub refuse_failures: bool,
    /// An attestation agent's `NOT_ENABLED`/`NOT_SUPPORTED` refuses the mount.
    pub refuse_unmeasured: bool,
}

impl FailurePolicy {
    /// Confidential mode refuses both (the answers unless `allow_unmeasured`); otherwise
    /// nothing refuses a mount and problems are only reported.
    pub fn new(confidential: bool, allow_unmeasured: bool) -> Self {
        Self {
            refuse_failures: confidential,
            refuse_unmeasured: confidential && !allow_unmeasured,
        }
    }
}

/// A measurement backend that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The flags select nothing usable.
    #[error(transparent)]
    Mode(#[from] ModeError),
    /// The TPM (or its event log) cannot be used.
    #[error("cannot start the TPM backend")]
    Tpm(#[source] tpm::TpmError),
}

/// The backend in use, as the agent's recorder.
#[derive(Debug)]
pub enum Measurer {
    /// The attestation agent.
    Aa(aa::AaRecorder<aa::AaConnection>),
    /// The TPM.
    Tpm(tpm::TpmRecorder),
}

impl Measurer {
    /// Starts `backend` (`None` for [`Backend::Log`]); the TPM's event log goes in
    /// `run_dir`. The attestation agent is connected to on the first event.
    pub fn start(
        backend: &Backend,
        options: &MeasureOptions,
        run_dir: &Path,
    ) -> Result<Option<Self>, MeasureError> {
        let policy = FailurePolicy::new(options.confidential, options.allow_unmeasured);
        let measurer = match backend {
            Backend::Log => return Ok(None),
            Backend::Aa { socket, .. } => Self::Aa(aa::AaRecorder::new(
                aa::AaConnection::new(socket.clone(), aa::AA_TIMEOUT),
                backend,
                policy,
            )),
            Backend::Tpm { device, pcr } => {
                let tpm = tpm::Tpm::open(device, *pcr).map_err(MeasureError::Tpm)?;
                let log = run_dir.join(tpm::EVENT_LOG);
                Self::Tpm(
                    tpm::TpmRecorder::new(tpm, &log, backend, policy).map_err(MeasureError::Tpm)?,
                )
            }
        };
        tracing::info!(backend = %backend, register = ?backend.register(), "measuring layers");
        Ok(Some(measurer))
    }
}

impl Recorder for Measurer {
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError> {
        match self {
            Self::Aa(r) => r.record(events),
            Self::Tpm(r) => r.record(events),
        }
    }

    fn measure_status(&self) -> Option<MeasureStatus> {
        match self {
            Self::Aa(r) => r.measure_status(),
            Self::Tpm(r) => r.measure_status(),
        }
    }
}

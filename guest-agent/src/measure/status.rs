//! What the agent reports about measuring in `Status`: the backend, the register, how
//! many events were measured and the last event that was not.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Backend;
use crate::sync::lock;

/// The measurement part of the agent's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeasureStatus {
    /// `aa`, `tpm` or `log`.
    pub backend: String,
    /// The register extended, when known (`None` with `log`, and with `aa` using the
    /// attestation agent's own default).
    pub register: Option<u32>,
    /// Events measured since the agent started.
    pub measured: u64,
    /// The last event that was not measured and why (an attestation agent's
    /// `NOT_ENABLED`/`NOT_SUPPORTED` answer, a failure), when there was one.
    pub problem: Option<String>,
}

impl MeasureStatus {
    /// The status of an agent with the JSON-lines log only.
    pub fn log_only() -> Self {
        Self {
            backend: "log".into(),
            register: None,
            measured: 0,
            problem: None,
        }
    }
}

/// A backend's running status, updated as it measures.
#[derive(Debug)]
pub struct StatusCell {
    backend: &'static str,
    register: Option<u32>,
    measured: AtomicU64,
    problem: Mutex<Option<String>>,
}

impl StatusCell {
    /// A fresh status for `backend`.
    pub fn new(backend: &Backend) -> Self {
        Self {
            backend: backend.name(),
            register: backend.register(),
            measured: AtomicU64::new(0),
            problem: Mutex::new(None),
        }
    }

    /// One more event measured.
    pub fn measured(&self) {
        self.measured.fetch_add(1, Ordering::Relaxed);
    }

    /// An event that was not measured, and why.
    pub fn problem(&self, what: String) {
        *lock(&self.problem) = Some(what);
    }

    /// A snapshot.
    pub fn get(&self) -> MeasureStatus {
        MeasureStatus {
            backend: self.backend.into(),
            register: self.register,
            measured: self.measured.load(Ordering::Relaxed),
            problem: lock(&self.problem).clone(),
        }
    }
}

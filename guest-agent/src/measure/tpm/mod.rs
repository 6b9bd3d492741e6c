//! The TPM backend: each layer's event is appended to the event log
//! (`<run_dir>/eventlog`, the attestation agent's own layout: TCG2 `EV_EVENT_TAG`
//! entries tagged `AAEL`) and fsynced, then its SHA-256 digest is extended into a PCR of
//! the SHA-256 bank through `/dev/tpmrm0`.
//!
//! Log first, then extend: a crash between the two leaves a log entry the register does
//! not hold, which a verifier sees (the replay of all entries but the last matches the
//! register) and reports as unextended. The other order would leave an extend no log
//! explains, and the whole register could no longer be replayed. One event is written
//! and extended at a time, under one lock, so the log's order is the register's.
//!
//! The two commands are written here ([`command`]): see docs/attestation.md, "TPM
//! commands (why hand-written)".

pub mod command;
pub mod device;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use layerpass_types::attest::eventlog;

use self::command::{ResponseError, SHA256_LEN};
use self::device::TpmDevice;
use super::layer::{self, LayerError};
use super::status::{MeasureStatus, StatusCell};
use super::{Backend, FailurePolicy};
use crate::error::Chain;
use crate::events::{LayerEvent, RecordError, Recorder};
use crate::sync::lock;

/// The event log's name in the run directory.
pub const EVENT_LOG: &str = "eventlog";

/// A TPM failure.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The device cannot be opened.
    #[error("cannot open the TPM {}", path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing a command or reading its response failed.
    #[error("{command} on the TPM {} failed", path.display())]
    Io {
        /// The command.
        command: &'static str,
        /// The device.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The response was refused (or the TPM failed the command).
    #[error("{command} of PCR {pcr} on the TPM {}", path.display())]
    Response {
        /// The command.
        command: &'static str,
        /// The PCR.
        pcr: u32,
        /// The device.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ResponseError,
    },
    /// The event log cannot be opened, read or written.
    #[error("{what} the event log {}", path.display())]
    Log {
        /// What was being done.
        what: &'static str,
        /// The log.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The event log does not start as this backend's logs do.
    #[error("the event log {} does not start with the event-log prefix", path.display())]
    ForeignLog {
        /// The log.
        path: PathBuf,
    },
    /// The layer cannot be measured.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// An open TPM and its PCR.
#[derive(Debug)]
pub struct Tpm {
    device: TpmDevice,
    pcr: u32,
}

impl Tpm {
    /// Opens the TPM at `path` to extend `pcr` (checked by the caller).
    pub fn open(path: &Path, pcr: u32) -> Result<Self, TpmError> {
        let device = TpmDevice::open(path).map_err(|source| TpmError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::with_device(device, pcr))
    }

    /// `pcr` of the TPM behind `device`.
    pub fn with_device(device: TpmDevice, pcr: u32) -> Self {
        Self { device, pcr }
    }

    /// The PCR.
    pub fn pcr(&self) -> u32 {
        self.pcr
    }

    fn transact(&mut self, name: &'static str, cmd: &[u8]) -> Result<Vec<u8>, TpmError> {
        self.device.transact(cmd).map_err(|source| TpmError::Io {
            command: name,
            path: self.device.path().to_owned(),
            source,
        })
    }

    fn response_error(&self, command: &'static str, source: ResponseError) -> TpmError {
        TpmError::Response {
            command,
            pcr: self.pcr,
            path: self.device.path().to_owned(),
            source,
        }
    }

    /// `TPM2_PCR_Extend` of the PCR's SHA-256 bank with `digest`.
    pub fn extend(&mut self, digest: &[u8; SHA256_LEN]) -> Result<(), TpmError> {
        const NAME: &str = "TPM2_PCR_Extend";
        let response = self.transact(NAME, &command::pcr_extend(self.pcr, digest))?;
        command::parse_pcr_extend(&response).map_err(|e| self.response_error(NAME, e))
    }

    /// `TPM2_PCR_Read` of the PCR's SHA-256 bank.
    pub fn read(&mut self) -> Result<[u8; SHA256_LEN], TpmError> {
        const NAME: &str = "TPM2_PCR_Read";
        let response = self.transact(NAME, &command::pcr_read(self.pcr))?;
        command::parse_pcr_read(self.pcr, &response).map_err(|e| self.response_error(NAME, e))
    }
}

/// The TPM and the event log, written together under one lock.
#[derive(Debug)]
struct Inner {
    tpm: Tpm,
    log: File,
}

/// Records each layer into the event log and the TPM.
#[derive(Debug)]
pub struct TpmRecorder {
    inner: Mutex<Inner>,
    log_path: PathBuf,
    policy: FailurePolicy,
    status: StatusCell,
}

/// Opens (or creates, with [`eventlog::file_prefix`]) the event log for appending; an
/// existing log (an earlier agent's, in this boot's run directory) must start with the
/// prefix.
fn open_log(path: &Path) -> Result<File, TpmError> {
    let err = |what, source| TpmError::Log {
        what,
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err("opening", e))?;
    let prefix = eventlog::file_prefix();
    let len = file.seek(SeekFrom::End(0)).map_err(|e| err("reading", e))?;
    if len == 0 {
        file.write_all(&prefix).map_err(|e| err("writing", e))?;
        file.sync_all().map_err(|e| err("syncing", e))?;
    } else if !prefix.is_empty() {
        let mut head = vec![0u8; prefix.len()];
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_exact(&mut head))
            .map_err(|e| err("reading", e))?;
        if head != prefix {
            return Err(TpmError::ForeignLog {
                path: path.to_owned(),
            });
        }
    }
    Ok(file)
}

impl TpmRecorder {
    /// Measures into `tpm`, logging to `log` (created if absent); reads the PCR once
    /// first, so a TPM without the SHA-256 bank (or without the PCR) is refused at start.
    pub fn new(
        mut tpm: Tpm,
        log: &Path,
        backend: &Backend,
        policy: FailurePolicy,
    ) -> Result<Self, TpmError> {
        let value = tpm.read()?;
        tracing::info!(pcr = tpm.pcr, value = %hex::encode(value), log = %log.display(), "measuring into the TPM");
        let log_file = open_log(log)?;
        Ok(Self {
            inner: Mutex::new(Inner { tpm, log: log_file }),
            log_path: log.to_owned(),
            policy,
            status: StatusCell::new(backend),
        })
    }

    /// The event log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The PCR's current value (SHA-256 bank).
    pub fn read_pcr(&self) -> Result<[u8; SHA256_LEN], TpmError> {
        lock(&self.inner).tpm.read()
    }

    fn record_one(&self, inner: &mut Inner, ev: &LayerEvent) -> Result<(), TpmError> {
        let event = layer::event(ev)?;
        let entry = eventlog::encode_entry(inner.tpm.pcr, &event);
        let log_err = |what, source| TpmError::Log {
            what,
            path: self.log_path.clone(),
            source,
        };
        let before = inner
            .log
            .seek(SeekFrom::End(0))
            .map_err(|e| log_err("reading", e))?;
        let appended = inner
            .log
            .write_all(&entry)
            .map_err(|e| log_err("appending to", e))
            .and_then(|()| inner.log.sync_data().map_err(|e| log_err("syncing", e)));
        if let Err(e) = appended {
            // A partial entry would garble every later one.
            self.take_back(inner, before);
            return Err(e);
        }
        let extended = inner.tpm.extend(&event.sha256());
        if let Err(TpmError::Response {
            source: ResponseError::Failed { .. },
            ..
        }) = &extended
        {
            // The TPM refused the extend: the register did not change, neither does the
            // log. (After an I/O error nobody knows; the entry stays for the verifier.)
            self.take_back(inner, before);
        }
        extended
    }

    /// Cuts the log back to `len` bytes (best effort: a failure is logged).
    fn take_back(&self, inner: &mut Inner, len: u64) {
        if let Err(e) = inner.log.set_len(len).and_then(|()| inner.log.sync_data()) {
            tracing::warn!(log = %self.log_path.display(), error = %e, "cannot take back an event-log entry");
        }
    }
}

impl Recorder for TpmRecorder {
    /// Per layer, in order: append the entry, fsync, extend. The first failure stops.
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError> {
        let mut inner = lock(&self.inner);
        for ev in events {
            match self.record_one(&mut inner, ev) {
                Ok(()) => self.status.measured(),
                Err(e) => {
                    let what = format!(
                        "measuring container {}'s layer {} into PCR {}",
                        ev.container_id,
                        ev.root_hash,
                        inner.tpm.pcr()
                    );
                    let problem = format!("{what}: {}", Chain(&e));
                    tracing::warn!(container = %ev.container_id, error = %problem, "layer not measured");
                    self.status.problem(problem);
                    if self.policy.refuse_failures {
                        return Err(RecordError::new(what, e));
                    }
                }
            }
        }
        Ok(())
    }

    fn measure_status(&self) -> Option<MeasureStatus> {
        Some(self.status.get())
    }
}

#[cfg(test)]
mod swtpm_tests;
#[cfg(test)]
mod tests;

//! `layerpass attest verify`: checks an event log in the attestation agent's format (the
//! guest's TPM backend writes the same) against the register it was extended into and
//! against reference values.
//!
//! The checks, in order:
//! 1. the log parses ([`eventlog::parse`]: bounded, every length and every SHA-2 digest of
//!    event data checked), else the first bad entry is named;
//! 2. replaying the SHA-256 digests of the entries of register `pcr_index` from zero gives
//!    the register's value, else nothing in the log can be trusted;
//! 3. every entry of that register is an AAEL tagged event with a SHA-256 digest; every
//!    layerpass event (domain [`DOMAIN`]) has a known operation and a canonical, valid
//!    [`LayerMeasurement`] as content; with reference values, every `MountLayer`'s root hash
//!    (and digest) is allowed. Events of other domains are replayed and reported as foreign.
//!
//! The first failure is a [`Rejection`] naming the entry (index and offset in the file).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use layerpass_types::ReferenceValues;
use layerpass_types::attest::eventlog::{self, EV_EVENT_TAG, EntryError, EventLogError, LogEntry};
use layerpass_types::attest::{AttestError, DOMAIN, LayerMeasurement, Operation};
use layerpass_types::reference_values::{ReferenceValuesError, RefusalReason};
use serde::Serialize;

/// The register the guest's TPM backend extends by default.
pub const DEFAULT_PCR_INDEX: u32 = 14;

/// Largest reference-values file read.
const MAX_REFERENCE_VALUES_SIZE: u64 = 16 << 20;

/// The verifier could not run (as opposed to the evidence being rejected).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A register value that is not 64 hex digits.
    #[error("register value {value:?} is not 64 hex digits (a SHA-256 PCR)")]
    BadPcr {
        /// The value as given (cut to 200 characters).
        value: String,
    },
    /// A reference-values file that is too large.
    #[error("{path}: {size} bytes, at most {max} read")]
    ReferenceValuesTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A reference-values file that is not UTF-8 text.
    #[error("reference values {path}: not UTF-8 text")]
    ReferenceValuesNotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A reference-values file that cannot be used.
    #[error("reference values {path}")]
    ReferenceValues {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReferenceValuesError,
    },
}

/// Where in the log a rejected entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntryRef {
    /// The entry's index (from 0).
    pub index: usize,
    /// Its offset in the file.
    pub offset: u64,
}

/// Why the evidence is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The log cannot be read.
    #[error("{0}")]
    Log(EntryError),
    /// The log is larger than the verifier reads.
    #[error("the event log is larger than {max} bytes")]
    LogTooLarge {
        /// The limit.
        max: usize,
    },
    /// The log does not replay to the register's value.
    #[error(
        "replaying the log's {entries} entries of PCR {pcr_index} gives {replayed}, the register holds {expected}: the log is not the register's"
    )]
    PcrMismatch {
        /// The register.
        pcr_index: u32,
        /// Entries replayed.
        entries: usize,
        /// What the replay gives (hex).
        replayed: String,
        /// The register's value (hex).
        expected: String,
    },
    /// An entry of another type than `EV_EVENT_TAG`: its digest is bound to no data.
    #[error(
        "event type {event_type} is not EV_EVENT_TAG (6): its digest is not bound to data the verifier can check"
    )]
    NotTagged {
        /// The type.
        event_type: u32,
    },
    /// An entry without a SHA-256 digest: it cannot be replayed in the SHA-256 bank.
    #[error("no SHA-256 digest (only the SHA-256 bank is verified)")]
    NoSha256,
    /// A tagged event that is not an AAEL event.
    #[error("tagged event id 0x{tag:08x} is not an attestation-agent (AAEL) event")]
    NotAael {
        /// Its tag.
        tag: u32,
    },
    /// A layerpass event with an unknown operation.
    #[error("unknown layerpass operation {0:?} (MountLayer or UnmountLayer)")]
    UnknownOperation(String),
    /// A layerpass event whose content is not a canonical, valid measurement.
    #[error("{0}")]
    Measurement(AttestError),
    /// A mounted layer the reference values do not allow.
    #[error("container {container_id}: {reason}")]
    NotAllowed {
        /// The container.
        container_id: String,
        /// Why.
        reason: RefusalReason,
    },
}

/// The evidence is rejected: which entry (if one) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", entry.map(|e| format!("event {} at offset {}: ", e.index, e.offset)).unwrap_or_default())]
pub struct Rejection {
    /// The entry at fault (`None`: the log as a whole).
    pub entry: Option<EntryRef>,
    /// Why.
    pub reason: RejectReason,
}

/// One verified entry of the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifiedEvent {
    /// A layerpass event.
    Layer {
        /// Entry index.
        index: usize,
        /// Entry offset.
        offset: u64,
        /// `MountLayer` or `UnmountLayer`.
        operation: &'static str,
        /// The container.
        container_id: String,
        /// The layer's diff ID, when known.
        digest: Option<String>,
        /// Its dm-verity root hash.
        root_hash: String,
        /// dm-verity's hash.
        hash_algorithm: String,
        /// The salt (hex).
        salt: String,
        /// Bytes verified.
        data_size: u64,
        /// Corruption mode.
        corruption: String,
        /// Whether the reference values allowed it (`None`: not checked, no reference
        /// values or an unmount).
        reference_values: Option<bool>,
    },
    /// An event of another domain: replayed, not interpreted.
    Foreign {
        /// Entry index.
        index: usize,
        /// Entry offset.
        offset: u64,
        /// Its domain.
        domain: String,
        /// Its operation.
        operation: String,
        /// Its content.
        content: String,
    },
}

/// Evidence that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Always true (a [`Rejection`] otherwise); for `--json` readers.
    pub verified: bool,
    /// The register.
    pub pcr_index: u32,
    /// Its value (hex), equal to the replay.
    pub pcr: String,
    /// Entries in the log.
    pub entries: usize,
    /// Entries of other registers (not verified here).
    pub other_registers: usize,
    /// Whether `MountLayer` events were checked against reference values.
    pub reference_values_checked: bool,
    /// The entries of the register, in order.
    pub events: Vec<VerifiedEvent>,
}

/// What to check the log against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The register the events were extended into.
    pub pcr_index: u32,
    /// The register's SHA-256 value.
    pub pcr: [u8; 32],
    /// Reference values for `MountLayer` events (`None`: not checked).
    pub reference_values: Option<ReferenceValues>,
}

/// Reads a register value: 64 hex digits in either case, surrounding whitespace ignored (so
/// `/sys/class/tpm/tpm0/pcr-sha256/N`, upper-case hex and a line feed, is read as it is).
///
/// # Errors
/// [`VerifyError::BadPcr`].
pub fn parse_pcr(text: &str) -> Result<[u8; 32], VerifyError> {
    let bad = || VerifyError::BadPcr {
        value: text.chars().take(200).collect(),
    };
    let trimmed = text.trim_ascii();
    let mut out = [0u8; 32];
    if trimmed.len() != 64 {
        return Err(bad());
    }
    hex::decode_to_slice(trimmed, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// Reads at most `max + 1` bytes of `path` (one more than allowed, so the parser sees the
/// file is too large without it being read whole).
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Reads an event log file, bounded: a file over [`eventlog::MAX_LOG_SIZE`] is read only
/// one byte past the limit (and [`verify`] rejects it).
///
/// # Errors
/// [`VerifyError::Io`].
pub fn read_event_log(path: &Path) -> Result<Vec<u8>, VerifyError> {
    read_bounded(path, eventlog::MAX_LOG_SIZE as u64)
}

/// Reads a reference-values file (TOML, see [`layerpass_types::reference_values`]).
///
/// # Errors
/// [`VerifyError`] naming the file and the problem.
pub fn read_reference_values(path: &Path) -> Result<ReferenceValues, VerifyError> {
    let bytes = read_bounded(path, MAX_REFERENCE_VALUES_SIZE)?;
    if bytes.len() as u64 > MAX_REFERENCE_VALUES_SIZE {
        return Err(VerifyError::ReferenceValuesTooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            max: MAX_REFERENCE_VALUES_SIZE,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| VerifyError::ReferenceValuesNotUtf8 {
        path: path.to_owned(),
    })?;
    ReferenceValues::parse(&text).map_err(|source| VerifyError::ReferenceValues {
        path: path.to_owned(),
        source,
    })
}

/// Checks the log `bytes` against `opts` (see the module documentation).
///
/// # Errors
/// The [`Rejection`] of the first check that fails.
pub fn verify(bytes: &[u8], opts: &VerifyOptions) -> Result<Report, Rejection> {
    let entries = eventlog::parse(bytes).map_err(|e| match e {
        EventLogError::TooLarge { max, .. } => Rejection {
            entry: None,
            reason: RejectReason::LogTooLarge { max },
        },
        EventLogError::Entry {
            index,
            offset,
            reason,
        } => Rejection {
            entry: Some(EntryRef { index, offset }),
            reason: RejectReason::Log(reason),
        },
    })?;
    let ours: Vec<&LogEntry> = entries
        .iter()
        .filter(|e| e.pcr_index == opts.pcr_index)
        .collect();
    // Entries without a SHA-256 digest would be skipped by the replay: refuse them first.
    for e in &ours {
        if e.sha256.is_none() {
            return Err(reject(e, RejectReason::NoSha256));
        }
    }
    let replayed = eventlog::replay(&entries, opts.pcr_index);
    if replayed != opts.pcr {
        return Err(Rejection {
            entry: None,
            reason: RejectReason::PcrMismatch {
                pcr_index: opts.pcr_index,
                entries: ours.len(),
                replayed: hex::encode(replayed),
                expected: hex::encode(opts.pcr),
            },
        });
    }
    let events = ours
        .iter()
        .map(|e| check_entry(e, opts.reference_values.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        verified: true,
        pcr_index: opts.pcr_index,
        pcr: hex::encode(opts.pcr),
        entries: entries.len(),
        other_registers: entries.len() - ours.len(),
        reference_values_checked: opts.reference_values.is_some(),
        events,
    })
}

fn reject(e: &LogEntry, reason: RejectReason) -> Rejection {
    Rejection {
        entry: Some(EntryRef {
            index: e.index,
            offset: e.offset,
        }),
        reason,
    }
}

/// Checks one entry of the register.
fn check_entry(e: &LogEntry, refs: Option<&ReferenceValues>) -> Result<VerifiedEvent, Rejection> {
    if e.event_type != EV_EVENT_TAG {
        return Err(reject(
            e,
            RejectReason::NotTagged {
                event_type: e.event_type,
            },
        ));
    }
    let Some(ev) = &e.event else {
        let tag = e
            .event_data
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_le_bytes(*b));
        return Err(reject(e, RejectReason::NotAael { tag }));
    };
    if ev.domain != DOMAIN {
        return Ok(VerifiedEvent::Foreign {
            index: e.index,
            offset: e.offset,
            domain: ev.domain.clone(),
            operation: ev.operation.clone(),
            content: ev.content.clone(),
        });
    }
    let op = Operation::parse(&ev.operation)
        .ok_or_else(|| reject(e, RejectReason::UnknownOperation(ev.operation.clone())))?;
    let m = LayerMeasurement::from_content(&ev.content)
        .map_err(|err| reject(e, RejectReason::Measurement(err)))?;
    let allowed = match (op, refs) {
        (Operation::MountLayer, Some(refs)) => {
            refs.allows(&m.root_hash, m.digest.as_deref())
                .map_err(|reason| {
                    reject(
                        e,
                        RejectReason::NotAllowed {
                            container_id: m.container_id.clone(),
                            reason,
                        },
                    )
                })?;
            Some(true)
        }
        _ => None,
    };
    Ok(VerifiedEvent::Layer {
        index: e.index,
        offset: e.offset,
        operation: op.as_str(),
        container_id: m.container_id,
        digest: m.digest,
        root_hash: m.root_hash,
        hash_algorithm: m.hash_algorithm,
        salt: m.salt,
        data_size: m.data_size,
        corruption: m.corruption,
        reference_values: allowed,
    })
}

#[cfg(test)]
mod tests;

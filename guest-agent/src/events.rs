//! What the agent records once a container's mount is complete: one [`LayerEvent`] per
//! layer, handed to every [`Recorder`] before `mount` returns, so a verifier can replay
//! which layers a container runs on. The JSON-lines event log ([`EventLog`]) is the
//! recorder every agent has; a runtime measurement backend (an attestation agent's
//! `ExtendRuntimeMeasurement`, a TPM PCR extend) is another [`Recorder`], added with
//! [`Agent::with_recorder`](crate::Agent::with_recorder).

mod jsonl;

use std::error::Error;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::jsonl::EventLog;

/// Whether a container's layer was mounted or unmounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The container's rootfs was mounted on this layer.
    Mount,
    /// The container's rootfs is gone (the layer may stay for other containers).
    Unmount,
}

/// The container's upper, as recorded: `kind` is `tmpfs`, `disk` or `encrypted-disk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpperEvent {
    /// Guest memory.
    Tmpfs {
        /// Size limit in bytes.
        size_bytes: u64,
    },
    /// A (host-written) scratch disk.
    Disk {
        /// Its virtio-blk serial.
        serial: String,
        /// The GPT partition name, when the upper is a partition.
        partition: Option<String>,
        /// Its filesystem.
        fs_type: String,
    },
    /// The scratch disk under dm-integrity and dm-crypt with a key made in the guest
    /// (the key is never recorded).
    #[serde(rename = "encrypted-disk")]
    EncryptedDisk {
        /// Its virtio-blk serial.
        serial: String,
        /// The GPT partition name, when the upper is a partition.
        partition: Option<String>,
    },
}

/// The dm-verity geometry and corruption mode of the device the layer is read through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerityEvent {
    /// `sha256`, `sha512` or `sha1`.
    pub algorithm: String,
    /// Hash format (0 or 1).
    pub format: u32,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Data blocks protected.
    pub data_blocks: u64,
    /// First block of the tree, in hash blocks.
    pub hash_start_block: u64,
    /// Salt, hex.
    pub salt: String,
    /// `eio`, `restart_on_corruption` or `panic_on_corruption`.
    pub on_corruption: String,
}

impl From<&crate::plan::VerityParams> for VerityEvent {
    fn from(v: &crate::plan::VerityParams) -> Self {
        use crate::plan::CorruptionMode;
        Self {
            algorithm: v.algorithm.name().to_owned(),
            format: v.format,
            data_block_size: v.data_block_size,
            hash_block_size: v.hash_block_size,
            data_blocks: v.data_blocks,
            hash_start_block: v.hash_start_block,
            salt: hex::encode(&v.salt),
            on_corruption: match v.on_corruption {
                CorruptionMode::Eio => "eio",
                CorruptionMode::Restart => "restart_on_corruption",
                CorruptionMode::Panic => "panic_on_corruption",
            }
            .to_owned(),
        }
    }
}

/// One recorded layer of a container (and one event-log line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEvent {
    /// `mount` or `unmount`.
    pub event: EventKind,
    /// The container the layer was mounted for.
    pub container_id: String,
    /// The layer's diff ID as **this container's plan** named it (for a shared layer, not
    /// the first mounter's); `null` when the plan did not know it (the root hash
    /// identifies the layer).
    pub digest: Option<String>,
    /// The verified root hash (hex), empty without verity.
    pub root_hash: String,
    /// The dm-verity geometry and corruption mode of the device in use (for a shared
    /// layer, as the first container set it up; the root hash pins the content); `null`
    /// without verity.
    pub verity: Option<VerityEvent>,
    /// Whether the layer was already mounted for another container.
    pub shared: bool,
    /// Where the container's rootfs is mounted.
    pub mount_point: std::path::PathBuf,
    /// The container's upper.
    pub upper: UpperEvent,
    /// When, RFC 3339 UTC with milliseconds.
    pub time: String,
}

/// Records the layers of each mounted (and unmounted) container.
///
/// The agent calls its recorders in the order they were added (the event log first) once
/// a container's layers, upper and overlay are mounted and its state is saved, and once
/// an unmount has torn everything down (before the state file goes). The first error
/// fails the mount (the agent undoes it) or the unmount (the state stays, a retry records
/// again) and the remaining recorders are not called.
/// What earlier recorders recorded stays recorded (an append-only log or a measurement
/// register cannot take it back).
pub trait Recorder: Send + Sync + fmt::Debug {
    /// Records the layers of one container, top first, one event each (all with the same
    /// time). Returns only once they are durable.
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError>;

    /// A measurement backend's status (the agent's `Status` shows the first one); `None`
    /// for a recorder that measures nothing.
    fn measure_status(&self) -> Option<crate::measure::MeasureStatus> {
        None
    }
}

/// Why a recorder could not record: what it was doing, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct RecordError {
    what: String,
    #[source]
    source: Box<dyn Error + Send + Sync + 'static>,
}

impl RecordError {
    /// A failure while doing `what` (e.g. `writing /run/layerpass/events.jsonl`).
    pub fn new(what: impl Into<String>, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }

    /// What the recorder was doing, without the cause.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// What the recorder was doing, and the cause.
    pub fn into_parts(self) -> (String, Box<dyn Error + Send + Sync + 'static>) {
        (self.what, self.source)
    }

    /// The cause, as an I/O error when it is one (the agent maps its errno to a kind).
    pub fn io_source(&self) -> Option<&std::io::Error> {
        self.source.downcast_ref()
    }
}

/// Now as RFC 3339 UTC (`2026-11-26T16:10:14.123Z`).
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

/// `secs` since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_709_414, 123), "2026-11-26T16:10:14.123Z");
    }
}

//! The event log: one JSON line per mounted layer, appended and fsynced before the
//! container's mount returns, so a verifier can replay which layers a container runs on.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Step};
use crate::sync::lock;

/// One event-log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEvent {
    /// The container the layer was mounted for.
    pub container_id: String,
    /// The layer's digest.
    pub digest: String,
    /// The verified root hash (hex), empty without verity.
    pub root_hash: String,
    /// When, RFC 3339 UTC with milliseconds.
    pub time: String,
}

/// Appends events to a file; one writer at a time.
#[derive(Debug)]
pub(crate) struct EventLog {
    path: PathBuf,
    write: Mutex<()>,
}

impl EventLog {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            write: Mutex::new(()),
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends `events` (one line each) and fsyncs the file.
    pub(crate) fn append(&self, events: &[LayerEvent]) -> Result<(), AgentError> {
        let err = |what: &str, e: &std::io::Error| {
            AgentError::io(Step::EventLog, format!("{what} {}", self.path.display()), e)
        };
        let mut buf = Vec::new();
        for ev in events {
            serde_json::to_writer(&mut buf, ev)
                .map_err(|e| err("encoding an event for", &e.into()))?;
            buf.push(b'\n');
        }
        let _guard = lock(&self.write);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| err("opening", &e))?;
        file.write_all(&buf).map_err(|e| err("writing", &e))?;
        file.sync_data().map_err(|e| err("syncing", &e))
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

    #[test]
    fn append_writes_one_json_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("events.jsonl"));
        let ev = |d: &str| LayerEvent {
            container_id: "c1".into(),
            digest: d.into(),
            root_hash: "ab".into(),
            time: "t".into(),
        };
        log.append(&[ev("a"), ev("b")]).unwrap();
        log.append(&[ev("c")]).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<LayerEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.iter().map(|e| e.digest.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
}

//! The event log: the layers' events as JSON lines, appended and fsynced.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{LayerEvent, RecordError, Recorder};
use crate::sync::lock;

/// Appends events to a file, one JSON line each; one writer at a time.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    write: Mutex<()>,
}

impl EventLog {
    /// A log appending to `path` (created on the first event).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            write: Mutex::new(()),
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Recorder for EventLog {
    /// Appends `events` (one line each) and fsyncs the file.
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError> {
        let err = |what: &str| format!("{what} {}", self.path.display());
        let mut buf = Vec::new();
        for ev in events {
            serde_json::to_writer(&mut buf, ev)
                .map_err(|e| RecordError::new(err("encoding an event for"), e))?;
            buf.push(b'\n');
        }
        let _guard = lock(&self.write);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| RecordError::new(err("opening"), e))?;
        file.write_all(&buf)
            .map_err(|e| RecordError::new(err("writing"), e))?;
        file.sync_data()
            .map_err(|e| RecordError::new(err("syncing"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, UpperEvent};

    fn event(digest: Option<&str>) -> LayerEvent {
        LayerEvent {
            event: EventKind::Mount,
            container_id: "c1".into(),
            digest: digest.map(Into::into),
            root_hash: "ab".into(),
            verity: None,
            shared: false,
            mount_point: "/run/layerpass/rootfs/c1".into(),
            upper: UpperEvent::Tmpfs { size_bytes: 1 },
            time: "t".into(),
        }
    }

    #[test]
    fn record_appends_one_json_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("events.jsonl"));
        let ev = |d: &str| event((!d.is_empty()).then_some(d));
        log.record(&[ev("a"), ev("b")]).unwrap();
        log.record(&[ev("c"), ev("")]).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<LayerEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines
                .iter()
                .map(|e| e.digest.as_deref())
                .collect::<Vec<_>>(),
            [Some("a"), Some("b"), Some("c"), None]
        );
        // an unknown digest is written as null, never guessed
        assert!(
            text.lines().nth(3).unwrap().contains("\"digest\":null"),
            "{text}"
        );
    }

    #[test]
    fn upper_kinds_are_tmpfs_disk_and_encrypted_disk() {
        let cases = [
            (UpperEvent::Tmpfs { size_bytes: 1 }, "tmpfs"),
            (
                UpperEvent::Disk {
                    serial: "s".into(),
                    partition: None,
                    fs_type: "ext4".into(),
                },
                "disk",
            ),
            (
                UpperEvent::EncryptedDisk {
                    serial: "S".into(),
                    partition: Some("lp-scratch".into()),
                },
                "encrypted-disk",
            ),
        ];
        for (upper, kind) in cases {
            let value = serde_json::to_value(&upper).unwrap();
            assert_eq!(value["kind"], kind, "{value}");
            assert_eq!(serde_json::from_value::<UpperEvent>(value).unwrap(), upper);
        }
        let value = serde_json::to_value(UpperEvent::EncryptedDisk {
            serial: "S".into(),
            partition: None,
        })
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({"kind": "encrypted-disk", "serial": "S", "partition": null})
        );
    }

    #[test]
    fn an_unwritable_log_is_an_error_naming_the_file_with_the_io_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/events.jsonl");
        let err = EventLog::new(path.clone())
            .record(&[event(Some("d"))])
            .unwrap_err();
        assert_eq!(err.to_string(), format!("opening {}", path.display()));
        assert_eq!(
            err.io_source().map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}

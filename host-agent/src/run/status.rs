//! The guest agent's status lines (one JSON object per line on the `layerpass.status`
//! virtio-serial port), as the host reads them.

use serde::Deserialize;

/// The virtio-serial port names of a run.
pub const STATUS_PORT: &str = "layerpass.status";
/// The command's stdout.
pub const STDOUT_PORT: &str = "layerpass.stdout";
/// The command's stderr.
pub const STDERR_PORT: &str = "layerpass.stderr";

/// One status line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StatusEvent {
    /// The agent runs and its ports are open.
    Ready {
        /// The guest's uptime then.
        uptime_ms: u64,
    },
    /// The rootfs is mounted.
    Mounted {
        /// Time the agent took to mount it (plan to rootfs ready).
        mount_ms: u64,
        /// The MountResponse in the protobuf JSON mapping.
        response: serde_json::Value,
    },
    /// A line the mount added to the agent's event log.
    Eventlog {
        /// The line.
        line: String,
    },
    /// A stage failed; the command did not run (or did not finish).
    Failed {
        /// `ports`, `plan`, `mount` or `process`.
        stage: String,
        /// The status kind (`PermissionDenied`, ...).
        kind: String,
        /// What the agent said.
        message: String,
    },
    /// The command ended.
    Exited {
        /// Its exit status (128 + signal when killed).
        code: i32,
        /// Spawn to exit.
        run_ms: u64,
    },
}

/// Parses one line; lines are bounded by the reader.
pub fn parse(line: &str) -> Result<StatusEvent, String> {
    serde_json::from_str(line).map_err(|e| format!("bad status line from the guest ({e}): {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse(r#"{"event":"exited","code":3,"run_ms":12}"#),
            Ok(StatusEvent::Exited {
                code: 3,
                run_ms: 12
            })
        );
        assert!(matches!(
            parse(r#"{"event":"failed","stage":"mount","kind":"PermissionDenied","message":"no"}"#),
            Ok(StatusEvent::Failed { .. })
        ));
        assert!(parse(r#"{"event":"exec","cmd":"sh"}"#).is_err());
        assert!(parse("not json").is_err());
    }
}

//! `layerpass run`'s status port: the lines the guest agent's `run` command writes (one
//! JSON object per line, each with an `event` field) and the host reads. One definition
//! for both sides.

use serde::{Deserialize, Serialize};

/// The virtio-serial port carrying the status lines.
pub const STATUS_PORT: &str = "layerpass.status";
/// The port carrying the command's stdout.
pub const STDOUT_PORT: &str = "layerpass.stdout";
/// The port carrying the command's stderr.
pub const STDERR_PORT: &str = "layerpass.stderr";

/// The stage of `run` a `failed` event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Opening the stdout and stderr ports.
    Ports,
    /// The flags, the reference values and the plan.
    Plan,
    /// The agent and the mount.
    Mount,
    /// `process.json`, the user, starting and waiting for the process.
    Process,
}

impl Stage {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ports => "ports",
            Self::Plan => "plan",
            Self::Mount => "mount",
            Self::Process => "process",
        }
    }
}

/// One status line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StatusEvent {
    /// The ports are open; the guest's uptime (from `/proc/uptime`).
    Ready {
        /// Milliseconds since the guest kernel started.
        uptime_ms: u64,
    },
    /// The rootfs is mounted.
    Mounted {
        /// The time of the agent's start and the mount (plan to rootfs ready).
        mount_ms: u64,
        /// The MountResponse, as `mount --plan --json` prints it.
        response: serde_json::Value,
    },
    /// One line the agent appended to its event log during this run.
    #[serde(rename = "eventlog")]
    EventLog {
        /// The line, without its newline.
        line: String,
    },
    /// A stage failed; the command did not run (or did not finish).
    Failed {
        /// Which stage.
        stage: Stage,
        /// The kind's name (`PermissionDenied`, ...).
        kind: String,
        /// The whole message.
        message: String,
    },
    /// The process ended.
    Exited {
        /// The exit status, 128 + signal, 127 not found, 126 not executable.
        code: i32,
        /// From spawn to exit.
        run_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_unknown_ones_are_refused() {
        let e = StatusEvent::Failed {
            stage: Stage::Mount,
            kind: "PermissionDenied".into(),
            message: "no".into(),
        };
        let line = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(
            line,
            r#"{"event":"failed","stage":"mount","kind":"PermissionDenied","message":"no"}"#
        );
        assert_eq!(serde_json::from_str::<StatusEvent>(&line).ok(), Some(e));
        assert!(serde_json::from_str::<StatusEvent>(r#"{"event":"exec","cmd":"sh"}"#).is_err());
        assert!(
            serde_json::from_str::<StatusEvent>(r#"{"event":"exited","code":1,"run_ms":2,"x":1}"#)
                .is_err()
        );
    }
}

//! The status port's lines: one JSON object per line, each with an `event` field,
//! flushed one by one.

use std::io::{self, Write};

use crate::cli::Failure;

pub use layerpass_types::run::{Stage, StatusEvent};

/// Writes status lines to a port.
#[derive(Debug)]
pub struct StatusPort<W> {
    out: W,
}

impl<W: Write> StatusPort<W> {
    /// Status lines on `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes `event` as one line and flushes it.
    pub fn try_send(&mut self, event: &StatusEvent) -> io::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }

    /// Writes `event`; a failure is logged (the run goes on, so that it still unmounts).
    pub fn send(&mut self, event: &StatusEvent) {
        if let Err(e) = self.try_send(event) {
            tracing::warn!(error = %e, "cannot write to the status port");
        }
    }

    /// Reports `failure` in `stage` and returns it.
    pub fn fail(&mut self, stage: Stage, failure: Failure) -> Failure {
        self.send(&StatusEvent::Failed {
            stage,
            kind: failure.kind.name().to_owned(),
            message: failure.message.clone(),
        });
        failure
    }

    /// The output (tests).
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use layerpass_protocols::status::Kind;
    use serde_json::json;

    use super::*;

    #[test]
    fn every_event_is_one_json_line_with_an_event_field() {
        let mut port = StatusPort::new(Vec::new());
        port.send(&StatusEvent::Ready { uptime_ms: 812 });
        port.send(&StatusEvent::Mounted {
            mount_ms: 35,
            response: json!({"containerId": "c1", "rootfs": "/run/layerpass/rootfs/c1"}),
        });
        port.send(&StatusEvent::EventLog {
            line: r#"{"event":"mount","container_id":"c1"}"#.to_owned(),
        });
        let failure = port.fail(
            Stage::Mount,
            Failure::new(
                Kind::PermissionDenied,
                "root hash not in the reference values",
            ),
        );
        assert_eq!(failure.kind, Kind::PermissionDenied);
        port.send(&StatusEvent::Exited {
            code: 137,
            run_ms: 4,
        });
        let text = String::from_utf8(port.into_inner()).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                json!({"event": "ready", "uptime_ms": 812}),
                json!({"event": "mounted", "mount_ms": 35, "response":
                    {"containerId": "c1", "rootfs": "/run/layerpass/rootfs/c1"}}),
                json!({"event": "eventlog", "line": r#"{"event":"mount","container_id":"c1"}"#}),
                json!({"event": "failed", "stage": "mount", "kind": "PermissionDenied",
                    "message": "root hash not in the reference values"}),
                json!({"event": "exited", "code": 137, "run_ms": 4}),
            ]
        );
        for stage in [Stage::Ports, Stage::Plan, Stage::Process] {
            let v = serde_json::to_value(stage).unwrap();
            assert_eq!(v, format!("{stage:?}").to_lowercase());
        }
    }
}

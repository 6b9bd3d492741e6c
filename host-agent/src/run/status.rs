//! The guest agent's status lines, as the host reads them (the one definition is in
//! `layerpass-types`, shared with the guest).

pub use layerpass_types::run::{STATUS_PORT, STDERR_PORT, STDOUT_PORT, Stage, StatusEvent};

/// Parses one line; lines are bounded by the reader.
pub fn parse(line: &str) -> Result<StatusEvent, String> {
    serde_json::from_str(line).map_err(|e| format!("bad status line from the guest ({e}): {line}"))
}

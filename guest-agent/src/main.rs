//! `layerpass-guest` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("layerpass-guest: the guest agent is not built yet");
    ExitCode::FAILURE
}

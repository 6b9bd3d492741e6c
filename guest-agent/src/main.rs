//! `layerpass-guest` binary: see `layerpass_guest::cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    layerpass_guest::cli::main()
}

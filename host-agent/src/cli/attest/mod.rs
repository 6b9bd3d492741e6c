//! `layerpass attest ...`: attestation tools (checking evidence, reference values).

mod verify;

use clap::Subcommand;

use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum Attest {
    /// Check an event log against the register it was extended into and against reference
    /// values; print the verified layers, or the event that failed (exit status 3).
    Verify(verify::VerifyArgs),
}

impl Attest {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Verify(a) => a.run(),
        }
    }
}

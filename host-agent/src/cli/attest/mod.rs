//! `layerpass attest ...`: attestation tools (reference values, initdata, checking
//! evidence).

mod initdata;
mod reference_values;
mod verify;

use clap::Subcommand;

use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum Attest {
    /// Compute each layer's dm-verity root hash from an image alone (no host, no cache),
    /// as layerpass or containerd's EROFS differ builds the layer, and print them as the
    /// guest agent's reference values, JSON, or a complete CoCo initdata document.
    ReferenceValues(reference_values::ReferenceValuesArgs),
    /// Check a CoCo initdata document and print its digest and the value it gives each
    /// TEE's field (SNP HOSTDATA, TDX MRCONFIGID, CCA, TPM PCR 8).
    Initdata(initdata::InitdataArgs),
    /// Check an event log against the register it was extended into and against reference
    /// values; print the verified layers, or the event that failed (exit status 3).
    Verify(verify::VerifyArgs),
}

impl Attest {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::ReferenceValues(a) => a.run(),
            Self::Initdata(a) => a.run(),
            Self::Verify(a) => a.run(),
        }
    }
}

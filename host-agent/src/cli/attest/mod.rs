//! `layerpass attest`: reference values and initdata for attested guests.

mod initdata;
mod reference_values;

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
}

impl Attest {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::ReferenceValues(a) => a.run(),
            Self::Initdata(a) => a.run(),
        }
    }
}

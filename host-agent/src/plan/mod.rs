//! The mount plan, built on the host: from exported disks (a layer disk by serial, a
//! composite partition by name, a scratch disk) and each layer's dm-verity parameters
//! (its `.dmverity` sidecar and the veritysetup superblock at the hash offset, or a
//! separate tree), the typed `MountRequest` the guest agent takes over ttrpc or as a
//! one-shot plan file. Every plan passes the guest's own rules before it leaves the host:
//! the shared validation of `layerpass-types`, with each layer checked against the logical
//! block size of the disk it is on.

mod build;
mod error;
mod files;
mod verity;

pub use build::{LayerPlacement, PlanBuilder, PlannedLayer, Upper};
pub use error::PlanError;
pub use files::{FilesPlan, plan_layer_files};
pub use verity::{Found, layer_mapping, mapping, read_superblock_at};

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod tests;

//! The encrypted scratch-disk upper: dm-integrity + AEAD dm-crypt over the scratch disk,
//! with a key made in the guest, formatted at every mount.
//!
//! Only the entry point's shape lives here for now: the kernel set-up is written
//! separately and replaces [`Agent::prepare_encrypted_upper`]'s body.

use std::path::PathBuf;

use layerpass_protocols::status::Kind;

use super::Agent;
use crate::error::{AgentError, Step};
use crate::kernel::MountSpec;
use crate::plan::DiskRef;
use crate::rollback::UndoStack;

impl Agent {
    /// Sets up the encrypted upper on the scratch `disk`: returns what to mount, the node
    /// of the device mounted (the dm-crypt device's) and the names of the device-mapper
    /// devices stacked, crypt first, then integrity: the order unmount removes them in.
    /// `name_hint` (the container id) goes into the devices' names; every step made
    /// records its undo in `undo`.
    ///
    /// This is a placeholder, to be replaced by the kernel set-up (dm-integrity, AEAD
    /// dm-crypt with a key made in the guest, ext2 formatting): for now it always fails
    /// with `FailedPrecondition`.
    pub(super) fn prepare_encrypted_upper(
        &self,
        disk: &DiskRef,
        name_hint: &str,
        undo: &mut UndoStack,
    ) -> Result<(MountSpec, PathBuf, Vec<String>), AgentError> {
        let _ = undo;
        tracing::warn!(%disk, name_hint, "encrypted-disk upper requested, not built yet");
        Err(AgentError::new(
            Kind::FailedPrecondition,
            Step::Upper,
            "encrypted-disk upper: set-up not built yet",
        ))
    }
}

//! Undo steps: each request records what it created; on failure the steps run in
//! reverse order, so nothing a failed request made stays behind.

use std::path::PathBuf;

use crate::kernel::Kernel;

/// One thing to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Unmount a mount the request made.
    Unmount(PathBuf),
    /// Remove a directory the request created (only if empty).
    RemoveDir(PathBuf),
    /// Remove a file or symlink the request created.
    RemoveFile(PathBuf),
    /// Remove a device node the request created.
    RemoveNode(PathBuf),
    /// Remove a device-mapper device the request created.
    DmRemove(String),
}

/// The steps of one request (or one layer's setup), in creation order.
#[derive(Debug, Default)]
pub(crate) struct UndoStack {
    steps: Vec<Undo>,
}

impl UndoStack {
    pub(crate) fn push(&mut self, step: Undo) {
        self.steps.push(step);
    }

    /// Forgets the steps: the request succeeded and keeps what it made.
    pub(crate) fn commit(mut self) {
        self.steps.clear();
    }

    /// Undoes every step, last first. Failures are logged and do not stop the rest.
    pub(crate) fn run(mut self, kernel: &dyn Kernel) {
        while let Some(step) = self.steps.pop() {
            let result = match &step {
                Undo::Unmount(p) => kernel.unmount(p),
                Undo::RemoveDir(p) => std::fs::remove_dir(p),
                Undo::RemoveFile(p) => std::fs::remove_file(p),
                Undo::RemoveNode(p) => kernel.remove_node(p),
                Undo::DmRemove(name) => kernel.dm_remove(name),
            };
            match result {
                Ok(()) => tracing::debug!(?step, "undone"),
                Err(e) => tracing::warn!(?step, error = %e, "cannot undo"),
            }
        }
    }
}

//! Files replaced atomically, for both agents (the guest agent must not depend on the host
//! crate): the new content is written to a temporary file in the target's directory, the
//! file is fsynced, renamed over the target, and the directory is fsynced, so that a reader
//! (or the next boot) sees the old file or the new one, whole, never a mix or nothing.
//!
//! - [`write_atomic`]: small files given as bytes (sidecars, state files);
//! - [`temp_beside`] + [`persist`]: large files streamed into the temporary file first;
//! - [`persist_noclobber`]: the same, refusing to replace an existing file;
//! - [`rename_synced`] + [`sync_dir`]: [`persist`] in two steps, for a caller that has
//!   something to undo when the rename fails.
//!
//! On error the temporary file is removed (it is a [`tempfile::NamedTempFile`], deleted when
//! dropped) and the target keeps its old content.

mod atomic;
mod error;

pub use atomic::{
    TEMP_PREFIX, dir_of, persist, persist_noclobber, rename_synced, sync_dir, temp_beside,
    write_atomic,
};
pub use error::FsError;
pub use tempfile::NamedTempFile;

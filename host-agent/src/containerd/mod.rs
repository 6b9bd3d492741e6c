//! containerd's EROFS mount lists (containerd 2.2+), read into typed layers and an upper.
//!
//! A runtime that claims `erofs` mounts (Kata's shim, our daemon) receives from containerd
//! a JSON array of `types.Mount`: one `erofs` mount per layer, top-most first, an optional
//! writable block image first, and a final overlay whose options name the layers through
//! templates (`lowerdir={{ overlay 1 3 }}`). [`parse_json`] reads the array, [`parse`]
//! checks its shape and returns a [`ContainerdRootfs`]. The module is pure: it never touches
//! the file system (no `Path::exists`), so it can be fuzzed
//! (`fuzz/fuzz_targets/containerd_mounts.rs`). What is accepted and refused, and why, is in
//! `docs/containerd.md`.
//!
//! | file | concern |
//! |---|---|
//! | `entry.rs` | [`MountEntry`] and the bounded JSON reader |
//! | `template.rs` | `{{ mount N }}` / `{{ overlay A B }}`, as `core/mount/manager/format.go` |
//! | `options.rs` | paths and the options of each mount type |
//! | `parse.rs` | the list's shape: layers, upper, final overlay |
//! | `error.rs` | [`MountListError`] |

use std::path::PathBuf;

mod entry;
mod error;
pub mod fuzz_harness;
mod options;
mod parse;
mod template;

#[cfg(test)]
mod tests;

pub use entry::{MAX_ENTRIES, MAX_JSON_BYTES, MountEntry, parse_json};
pub use error::MountListError;
pub use parse::parse;

/// What a mount list describes: the layers and the upper of one root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdRootfs {
    /// The layers, top layer first: overlay `lowerdir` order.
    pub layers: Vec<ContainerdLayer>,
    /// Where writes go.
    pub upper: ContainerdUpper,
    /// The overlay options that change behaviour.
    pub overlay: OverlayOptions,
}

/// One EROFS layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdLayer {
    /// The layer blob (`<root>/snapshots/<id>/layer.erofs`): absolute, no `..`.
    pub blob: PathBuf,
    /// Its dm-verity metadata.
    pub verity: LayerVerity,
    /// The index of its `erofs` entry in the list.
    pub mount_index: usize,
}

/// A layer's dm-verity metadata, from `X-containerd.dmverity=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerVerity {
    /// No option, or `=off`.
    Off,
    /// The `.dmverity` sidecar (`{"roothash","hashoffset"}`): the option's path, or
    /// `<blob>.dmverity` for the pre-release `=on`.
    Sidecar(PathBuf),
}

/// The writable upper of the root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerdUpper {
    /// A view: no upper.
    ReadOnly,
    /// Block mode: an ext4 image whose root holds `upper/` and `work/`.
    BlockImage {
        /// The image file (`<root>/snapshots/<id>/rwlayer.img`).
        path: PathBuf,
        /// Its file system: `ext4`.
        fs_type: String,
        /// `Some` for `mkfs/ext4` (not created yet), `None` once activated (`ext4`).
        create: Option<BlockCreate>,
    },
    /// Non-block mode: host directories. A VM cannot use them; the daemon substitutes its
    /// own upper.
    HostDir {
        /// `upperdir=`.
        upperdir: PathBuf,
        /// `workdir=`.
        workdir: PathBuf,
    },
}

/// How containerd would create a block image (`mkfs/ext4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockCreate {
    /// `X-containerd.mkfs.size`, in bytes (at least 1).
    pub size: u64,
    /// `X-containerd.mkfs.uuid`, as given (a valid UUID).
    pub uuid: Option<String>,
}

/// Overlay options that change how the root file system behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    /// `volatile`: no sync of the upper.
    pub volatile: bool,
    /// `userxattr`: `user.overlay.*` xattrs (unprivileged overlay).
    pub userxattr: bool,
}

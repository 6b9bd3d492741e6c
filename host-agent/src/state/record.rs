//! What the state database holds for one export: enough to serve its disks again after a
//! restart without reading the request again (the blobs, trees and scratch files by path,
//! each disk's socket, serial, size and minor) and to answer `List` (the plan, the guest
//! endpoint, the root hashes).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The key of an export: the sandbox and the container, both checked ids (no `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExportKey {
    /// The sandbox (VM) id.
    pub sandbox: String,
    /// The container id, unique within the sandbox.
    pub container: String,
}

impl ExportKey {
    /// The database key: `<sandbox>/<container>` (ids never contain `/`).
    pub fn db_key(&self) -> String {
        format!("{}/{}", self.sandbox, self.container)
    }
}

impl std::fmt::Display for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.sandbox, self.container)
    }
}

/// Where the layers came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SourceRecord {
    /// A containerd mount list (kept as given).
    Containerd {
        /// The mounts as given (containerd's `types.Mount`).
        mounts: Vec<MountRecord>,
    },
    /// An OCI layout or `docker save` archive converted into the layer cache.
    Image {
        /// The image on the host.
        path: PathBuf,
        /// The platform asked for, if any.
        platform: Option<String>,
    },
}

/// One containerd mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `type`.
    pub kind: String,
    /// `source`.
    pub source: String,
    /// `options`.
    pub options: Vec<String>,
}

/// What a disk serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DiskBacking {
    /// One layer blob, then its separate tree file when there is one.
    Layer {
        /// The blob.
        blob: PathBuf,
        /// A tree the daemon computed (in its cache), when the blob has none appended.
        tree: Option<PathBuf>,
        /// The logical block size its verity needs (`min(4096, data, hash block size)`),
        /// when its sidecar is not beside the blob for the disk to find.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block_size: Option<u32>,
        /// For an index layer (`blob` its metadata): the tar it points into.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<IndexTarRecord>,
    },
    /// Every layer as a GPT partition, top first.
    Composite {
        /// The layers.
        layers: Vec<CompositeLayerRecord>,
    },
    /// A writable scratch file.
    Scratch {
        /// The file.
        path: PathBuf,
        /// The daemon made it in its state directory and deletes it at `Unexport`
        /// (containerd's `rwlayer.img` belongs to containerd and is never deleted).
        owned: bool,
    },
}

/// One layer of a composite disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeLayerRecord {
    /// The blob.
    pub blob: PathBuf,
    /// A computed tree, when the blob has none appended.
    pub tree: Option<PathBuf>,
    /// The diff ID, when known.
    pub diff_id: Option<String>,
    /// The root hash (hex), when the layer has verity.
    pub root_hash: Option<String>,
    /// As for [`DiskBacking::Layer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// As for [`DiskBacking::Layer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexTarRecord>,
}

/// The tar an index layer's metadata points into: a file, from an offset (a layer tar
/// inside an image archive is referenced where it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexTarRecord {
    /// The file.
    pub path: PathBuf,
    /// Where the tar starts in it.
    pub offset: u64,
}

impl From<&crate::export::index::IndexTar> for IndexTarRecord {
    fn from(t: &crate::export::index::IndexTar) -> Self {
        Self {
            path: t.path.clone(),
            offset: t.offset,
        }
    }
}

impl From<&IndexTarRecord> for crate::export::index::IndexTar {
    fn from(t: &IndexTarRecord) -> Self {
        Self {
            path: t.path.clone(),
            offset: t.offset,
        }
    }
}

/// The role of a disk in the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskRole {
    /// A layer disk.
    Layer,
    /// The composite disk.
    Composite,
    /// The scratch disk.
    Scratch,
}

/// One served disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    /// What it is.
    pub role: DiskRole,
    /// Its vhost-user socket.
    pub socket: PathBuf,
    /// Its virtio-blk serial.
    pub serial: String,
    /// Its size in bytes (checked again when it is served after a restart).
    pub size: u64,
    /// Whether writes are refused.
    pub read_only: bool,
    /// The Kata store's device node and its minor, when the store is on.
    pub node: Option<(PathBuf, u32)>,
    /// What it serves.
    pub backing: DiskBacking,
}

/// One export, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// Sandbox and container.
    pub key: ExportKey,
    /// Where the layers came from.
    pub source: SourceRecord,
    /// The disks, in the order the response lists them.
    pub disks: Vec<DiskRecord>,
    /// The mount plan, in the protobuf JSON mapping.
    pub plan_json: String,
    /// The guest endpoint the plan was delivered to (its text form).
    pub guest: Option<String>,
    /// The layers' root hashes (hex), top first; empty strings for layers without verity.
    pub root_hashes: Vec<String>,
    /// Seconds since the epoch at export.
    pub created_unix: u64,
}

use std::io;
use std::path::PathBuf;

use super::verify::BadBlock;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors of the dm-verity module. Messages are sentence-case and name the bad value.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// A value that breaks a rule of the host-guest contract (`layerpass-types`): block
    /// sizes out of the envelope, a bad root hash, an unknown algorithm.
    #[error(transparent)]
    Contract(#[from] layerpass_types::TypeError),
    #[error("salt is {len} bytes; at most 256 are allowed")]
    SaltTooLong { len: usize },
    #[error("{what} is not valid hex: {value:?}")]
    BadHex { what: &'static str, value: String },
    #[error("unknown dm-verity format {0} (expected 0 or 1)")]
    UnknownFormat(u64),
    #[error("hash block size {hash_block_size} cannot hold two {algorithm} digests")]
    HashBlockTooSmall {
        hash_block_size: u32,
        algorithm: &'static str,
    },
    #[error("{path} is empty: there is no data to protect")]
    EmptyData { path: PathBuf },
    #[error(
        "{path} is {size} bytes, not a multiple of the data block size {block_size} \
         ({remainder} trailing bytes would not be protected); pad it or pass --pad"
    )]
    PartialBlock {
        path: PathBuf,
        size: u64,
        block_size: u32,
        remainder: u64,
    },
    #[error("{path} holds {available} data blocks, fewer than the {requested} requested")]
    NotEnoughData {
        path: PathBuf,
        available: u64,
        requested: u64,
    },
    #[error("data block count must be at least 1")]
    ZeroDataBlocks,
    #[error(
        "hash offset {hash_offset} lies inside the data, which ends at byte {data_end}; \
         the hash area must start at or after the end of the data"
    )]
    HashOffsetInsideData { hash_offset: u64, data_end: u64 },
    #[error("hash offset {hash_offset} is not a multiple of {alignment}")]
    HashOffsetAlignment { hash_offset: u64, alignment: u64 },
    #[error("the tree for {data_blocks} data blocks has too many levels")]
    TooManyLevels { data_blocks: u64 },
    #[error("{data_blocks} data blocks and their tree do not fit in 2^64 bytes")]
    TooLarge { data_blocks: u64 },
    #[error("no veritysetup superblock at byte {offset} of {path}: {reason}")]
    BadSuperblock {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("sidecar {path} is not valid: {reason}")]
    BadSidecar { path: PathBuf, reason: String },
    #[error("{path} ends at byte {size}, before the end of the hash tree at byte {needed}")]
    TruncatedHashArea {
        path: PathBuf,
        size: u64,
        needed: u64,
    },
    #[error("recorded leaf digests cannot be used: {0}")]
    Leaves(String),
    #[error(
        "the root hash {expected} does not match the hash tree in {path}: its top block at byte \
         {offset} hashes to {found}"
    )]
    RootMismatch {
        path: PathBuf,
        offset: u64,
        expected: String,
        found: String,
    },
    #[error("verification failed: {0}")]
    Mismatch(BadBlock),
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A failed atomic replacement, worded as every other I/O error of the module.
impl From<layerpass_fsutil::FsError> for VerityError {
    fn from(e: layerpass_fsutil::FsError) -> Self {
        Self::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl VerityError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

impl HasKind for VerityError {
    fn kind(&self) -> Kind {
        match self {
            Self::Io { source, .. } => Kind::of_io(source),
            // the data does not match its tree: the layer is corrupt
            Self::Mismatch(_) | Self::RootMismatch { .. } => Kind::FailedPrecondition,
            Self::Leaves(_) => Kind::Internal,
            Self::Contract(_)
            | Self::SaltTooLong { .. }
            | Self::BadHex { .. }
            | Self::UnknownFormat(_)
            | Self::HashBlockTooSmall { .. }
            | Self::EmptyData { .. }
            | Self::PartialBlock { .. }
            | Self::NotEnoughData { .. }
            | Self::ZeroDataBlocks
            | Self::HashOffsetInsideData { .. }
            | Self::HashOffsetAlignment { .. }
            | Self::TooManyLevels { .. }
            | Self::TooLarge { .. }
            | Self::BadSuperblock { .. }
            | Self::BadSidecar { .. }
            | Self::TruncatedHashArea { .. } => Kind::InvalidArgument,
        }
    }
}

use std::io;
use std::path::PathBuf;

use crate::verity::VerityError;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors of the tar → EROFS writer. Messages are sentence-case, name the tar entry (as
/// written in the tar, lossily decoded) and say what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ErofsError {
    #[error("cannot read the layer")]
    Read(#[source] io::Error),
    #[error("cannot decompress the {format} layer")]
    Decompress {
        format: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the tar stream is not valid after entry {after:?}")]
    Tar {
        /// The last entry read successfully, or `(start of archive)`.
        after: String,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {entry:?} is truncated: {got} of {expected} content bytes")]
    Truncated {
        entry: String,
        expected: u64,
        got: u64,
    },
    #[error("tar entry {entry:?}: path escapes the root directory through `..`")]
    PathEscape { entry: String },
    #[error("tar entry {entry:?}: {what} contains a NUL byte")]
    Nul { entry: String, what: &'static str },
    #[error("tar entry {entry:?}: name component of {len} bytes is longer than 255")]
    NameTooLong { entry: String, len: usize },
    #[error("tar entry {entry:?}: {parent:?} is not a directory")]
    NotADirectory { entry: String, parent: String },
    #[error("tar entry {entry:?}: the root directory cannot be a {kind}")]
    RootNotDirectory { entry: String, kind: &'static str },
    #[error("tar entry {entry:?}: hard link target {target:?} {reason}")]
    BadHardlink {
        entry: String,
        target: String,
        reason: &'static str,
    },
    #[error("tar entry {entry:?}: unsupported entry type {typeflag:?}")]
    UnsupportedType { entry: String, typeflag: char },
    #[error("tar entry {entry:?}: {what} {value} does not fit: {limit}")]
    OutOfRange {
        entry: String,
        what: &'static str,
        value: String,
        limit: &'static str,
    },
    #[error("tar entry {entry:?}: header field {field} is not a number: {reason}")]
    BadHeaderField {
        entry: String,
        field: &'static str,
        reason: String,
    },
    #[error("tar entry {entry:?}: bad PAX record {key:?}: {reason}")]
    BadPax {
        entry: String,
        key: String,
        reason: String,
    },
    #[error("tar entry {entry:?}: xattr {name:?} {reason}")]
    BadXattr {
        entry: String,
        name: String,
        reason: String,
    },
    #[error("tar entry {entry:?}: symlink {reason}")]
    BadSymlink { entry: String, reason: &'static str },
    #[error("tar entry {entry:?}: whiteout {reason}")]
    BadWhiteout { entry: String, reason: &'static str },
    /// The uncompressed tar went past `ConvertOptions::max_layer_bytes`.
    #[error("the uncompressed layer exceeds the max-layer-bytes limit of {limit} bytes")]
    LayerTooLarge { limit: u64 },
    /// The tar has more entries than `ConvertOptions::max_entries`.
    #[error("the layer has more entries than the max-entries limit of {limit}")]
    TooManyEntries { limit: u64 },
    #[error(
        "the tar reaches byte {bytes}: a tar index addresses at most 2 TiB (32-bit addresses \
         of 512-byte blocks; more would need EROFS's 48-bit layout, Linux 6.15 or later)"
    )]
    TarTooLarge { bytes: u64 },
    #[error("the image would need {blocks} blocks; EROFS addresses at most 2^32")]
    TooLarge { blocks: u64 },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an EROFS image (no EROFS magic at byte 1024)")]
    NotErofs { path: PathBuf },
    #[error("{path} is not the metadata of a tar index: {reason}")]
    NotAnIndex { path: PathBuf, reason: String },
    #[error("cannot add the dm-verity tree")]
    Verity(#[from] VerityError),
}

/// A failed atomic replacement, worded as every other I/O error of the module.
impl From<layerpass_fsutil::FsError> for ErofsError {
    fn from(e: layerpass_fsutil::FsError) -> Self {
        Self::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl ErofsError {
    /// Maps an I/O error on `path` during `op`, for `map_err`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

impl HasKind for ErofsError {
    fn kind(&self) -> Kind {
        match self {
            // The zstd decoder reports a corrupt frame as `ErrorKind::Other` (errors of the
            // file under it keep their errno's kind): the input's fault too. Found by the
            // tar_convert fuzz target.
            Self::Decompress { source: e, .. } if e.kind() == std::io::ErrorKind::Other => {
                Kind::InvalidArgument
            }
            Self::Read(e) | Self::Decompress { source: e, .. } | Self::Tar { source: e, .. } => {
                // a tar or compressed stream that does not parse is the input's fault
                match e.kind() {
                    std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::UnexpectedEof => Kind::InvalidArgument,
                    _ => Kind::of_io(e),
                }
            }
            Self::Io { source, .. } => Kind::of_io(source),
            Self::Verity(e) => e.kind(),
            Self::Truncated { .. }
            | Self::PathEscape { .. }
            | Self::Nul { .. }
            | Self::NameTooLong { .. }
            | Self::NotADirectory { .. }
            | Self::RootNotDirectory { .. }
            | Self::BadHardlink { .. }
            | Self::UnsupportedType { .. }
            | Self::OutOfRange { .. }
            | Self::BadHeaderField { .. }
            | Self::BadPax { .. }
            | Self::BadXattr { .. }
            | Self::BadSymlink { .. }
            | Self::BadWhiteout { .. }
            | Self::TooLarge { .. }
            | Self::TarTooLarge { .. }
            | Self::LayerTooLarge { .. }
            | Self::TooManyEntries { .. }
            | Self::NotErofs { .. }
            | Self::NotAnIndex { .. } => Kind::InvalidArgument,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_zstd_layer_is_the_inputs_fault() {
        // zstd's "Data corruption detected" comes as ErrorKind::Other.
        let corrupt = ErofsError::Decompress {
            format: "zstd",
            source: io::Error::other("Data corruption detected"),
        };
        assert_eq!(corrupt.kind(), Kind::InvalidArgument);
        let eio = ErofsError::Decompress {
            format: "zstd",
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert_ne!(eio.kind(), Kind::InvalidArgument);
    }
}

//! Errors of the image reader. Every message names the file or blob and what was wrong.

use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors reading an OCI image layout or a `docker save` archive.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is neither a directory (OCI image layout) nor a regular file (docker save tar)"
    )]
    UnknownInput { path: PathBuf },
    #[error(
        "{what}: {value:?} is not a valid digest (expected sha256: and 64 lower-case hex digits)"
    )]
    BadDigest { what: String, value: String },
    #[error("{what}: digest algorithm {algorithm:?} is not supported (only sha256)")]
    UnsupportedDigestAlgorithm { what: String, algorithm: String },
    #[error("{what} is not valid JSON of the expected shape: {reason}")]
    BadJson { what: String, reason: String },
    #[error("{what} is invalid: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what} is {size} bytes, more than the {limit} bytes allowed for it")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{path}: not an OCI image layout: {reason}")]
    NotOciLayout { path: PathBuf, reason: String },
    #[error("blob {digest} is missing (expected at {location})")]
    MissingBlob { digest: String, location: String },
    #[error(
        "{location} is not a regular file inside the image layout (a link out of it, a device \
         or a FIFO)"
    )]
    OutsideLayout { location: String },
    #[error("blob {digest} at {location} is {actual} bytes; its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        location: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} at {location} is longer than the {expected} bytes its descriptor says")]
    TooLong {
        digest: String,
        location: String,
        expected: u64,
    },
    #[error(
        "blob {digest} at {location} has sha256 {actual}; its content does not match its digest"
    )]
    DigestMismatch {
        digest: String,
        location: String,
        actual: String,
    },
    #[error("{what} has media type {media_type:?}: {reason}")]
    UnsupportedMediaType {
        what: String,
        media_type: String,
        reason: String,
    },
    #[error("{value:?} is not a platform (expected os/arch or os/arch/variant)")]
    BadPlatform { value: String },
    #[error("no manifest for platform {wanted} in {source_name}; available: {available}")]
    PlatformNotFound {
        wanted: String,
        source_name: String,
        available: String,
    },
    #[error("{what} nests indexes deeper than {limit} levels (or refers to itself)")]
    IndexTooDeep { what: String, limit: usize },
    #[error(
        "image config {config} lists {diff_ids} diff ids but the manifest lists {layers} layers"
    )]
    LayerCountMismatch {
        config: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("{archive}: tar member {member:?} is missing")]
    MissingMember { archive: PathBuf, member: String },
    #[error("{archive}: bad tar archive: {reason}")]
    BadArchive { archive: PathBuf, reason: String },
    #[error(
        "{archive} is {compression}-compressed; decompress it first (archives are read in \
         place, by offset)"
    )]
    CompressedArchive {
        archive: PathBuf,
        compression: &'static str,
    },
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn json(what: impl Into<String>, err: &serde_json::Error) -> Self {
        Self::BadJson {
            what: what.into(),
            reason: err.to_string(),
        }
    }
}

impl HasKind for ImageError {
    fn kind(&self) -> Kind {
        match self {
            Self::Io { source, .. } => Kind::of_io(source),
            Self::MissingBlob { .. }
            | Self::PlatformNotFound { .. }
            | Self::MissingMember { .. } => Kind::NotFound,
            Self::DigestMismatch { .. } | Self::SizeMismatch { .. } | Self::TooLong { .. } => {
                Kind::FailedPrecondition
            }
            Self::UnknownInput { .. }
            | Self::BadDigest { .. }
            | Self::UnsupportedDigestAlgorithm { .. }
            | Self::BadJson { .. }
            | Self::Invalid { .. }
            | Self::TooLarge { .. }
            | Self::NotOciLayout { .. }
            | Self::OutsideLayout { .. }
            | Self::UnsupportedMediaType { .. }
            | Self::BadPlatform { .. }
            | Self::IndexTooDeep { .. }
            | Self::LayerCountMismatch { .. }
            | Self::BadArchive { .. }
            | Self::CompressedArchive { .. } => Kind::InvalidArgument,
        }
    }
}

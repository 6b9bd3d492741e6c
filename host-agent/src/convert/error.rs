//! Errors of [`super::convert_image`]: which layer, and what was wrong with it.

use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};
use layerpass_types::Digest;

use crate::erofs::ErofsError;
use crate::image::ImageError;

/// Converting an image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageConvertError {
    #[error("cannot read the image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot convert layer {index} ({digest})")]
    Layer {
        index: usize,
        /// The layer blob's digest in the image.
        digest: Digest,
        /// Boxed: a layer's errors are large, and this one is returned up the stack.
        #[source]
        source: Box<LayerConvertError>,
    },
}

/// Converting one layer failed; nothing of it is left in the output directory.
#[derive(Debug, thiserror::Error)]
pub enum LayerConvertError {
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blob cannot be read, or does not match its digest or size.
    #[error(transparent)]
    Blob(#[from] ImageError),
    /// The tar is not a layer the converter accepts, or writing the blob failed.
    #[error(transparent)]
    Convert(#[from] ErofsError),
    #[error("the layer's tar has diff id {actual}, but the image config says {expected}")]
    DiffIdMismatch { actual: String, expected: Digest },
    #[error("the converter wrote no dm-verity tree for {path}")]
    NoVerityTree { path: PathBuf },
    #[error("the converter reported a root hash that is not one")]
    BadRootHash(#[source] layerpass_types::TypeError),
    #[error("cannot rename {from} to {to}")]
    Publish {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blob is in place but its directory could not be synced.
    #[error(transparent)]
    Sync(#[from] layerpass_fsutil::FsError),
}

impl HasKind for ImageConvertError {
    fn kind(&self) -> Kind {
        match self {
            Self::Image { source, .. } => source.kind(),
            Self::CreateDir { source, .. } => Kind::of_io(source),
            Self::Layer { source, .. } => source.kind(),
        }
    }
}

impl HasKind for LayerConvertError {
    fn kind(&self) -> Kind {
        match self {
            Self::CreateDir { source, .. } | Self::Publish { source, .. } => Kind::of_io(source),
            Self::Sync(e) => Kind::of_io(&e.source),
            Self::Blob(e) => e.kind(),
            Self::Convert(e) => e.kind(),
            // the image's config and its layer disagree: the image is corrupt
            Self::DiffIdMismatch { .. } => Kind::FailedPrecondition,
            // the converter did not do what it must
            Self::NoVerityTree { .. } | Self::BadRootHash(_) => Kind::Internal,
        }
    }
}

//! Container image input: OCI image layouts (directories or tar archives) and `docker save`
//! archives.
//!
//! [`open_image`] finds the manifest for a platform (linux/amd64 by default), reads and
//! verifies the manifest and the image config against their digests, checks every layer's
//! media type and the config's diff ids, and returns an [`Image`] whose [`Layer`]s open
//! through [`VerifyingReader`]s: every byte handed out is part of a blob whose sha256 and
//! size are checked against its descriptor, and a mismatch is an error naming the blob.
//! Archives are read in place (members indexed, then read by offset), never extracted.

mod archive;
mod digest;
mod docker;
mod error;
mod media;
mod model;
mod oci;
mod platform;
mod select;
mod spec;
mod store;
mod verify;

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

pub use digest::Digest;
pub use error::ImageError;
pub use media::Compression;
pub use model::{CONFIG_LIMIT, Image, Layer, METADATA_LIMIT, SourceFormat, read_config};
pub use platform::Platform;
pub use store::BlobReader;
pub use verify::{VerifyingReader, into_image_error};

use archive::TarArchive;
use store::Store;

/// Reads the image at `path` (an OCI layout directory, a `docker save` tar or an OCI
/// layout tar) for `platform`, linux/amd64 when `None`.
pub fn open_image(path: &Path, platform: Option<&Platform>) -> Result<Image, ImageError> {
    let meta = std::fs::metadata(path).map_err(ImageError::io("open", path))?;
    if meta.is_dir() {
        let store = Arc::new(Store::Dir {
            root: path.to_owned(),
        });
        return oci::read(&store, path, SourceFormat::OciLayout, platform);
    }
    if !meta.is_file() {
        return Err(ImageError::UnknownInput {
            path: path.to_owned(),
        });
    }
    check_not_compressed(path)?;
    let store = Arc::new(Store::Tar(TarArchive::index(path)?));
    if store.contains("manifest.json") {
        docker::read(&store, path, platform)
    } else if store.contains("index.json") {
        oci::read(&store, path, SourceFormat::OciArchive, platform)
    } else {
        Err(ImageError::BadArchive {
            archive: path.to_owned(),
            reason: "it has neither manifest.json (docker save) nor index.json (OCI layout)".into(),
        })
    }
}

/// `docker save | gzip` output cannot be read by offset: say so instead of "bad tar".
fn check_not_compressed(path: &Path) -> Result<(), ImageError> {
    let mut head = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(ImageError::io("read", path))?;
    let compression = match Compression::sniff(&head) {
        Compression::None => return Ok(()),
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    Err(ImageError::CompressedArchive {
        archive: path.to_owned(),
        compression,
    })
}

//! The image we read: its config digest and its layers, bottom first.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::digest::Digest;
use super::error::ImageError;
use super::media::{Compression, layer_compression};
use super::platform::Platform;
use super::spec::Descriptor;
use super::store::{BlobReader, BlobRef, Store};

/// Largest index, manifest or `manifest.json` we read.
pub const METADATA_LIMIT: u64 = 4 * 1024 * 1024;
/// Largest image config we read.
pub const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;

/// What kind of input the image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// An OCI image layout directory.
    OciLayout,
    /// An OCI image layout in a tar archive (no `manifest.json`).
    OciArchive,
    /// A `docker save` archive (`manifest.json`).
    DockerArchive,
}

/// A container image: the chosen manifest's config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// The directory or archive read.
    pub source: PathBuf,
    pub format: SourceFormat,
    /// The image manifest's digest; `None` for a `docker save` archive, which has none.
    pub manifest_digest: Option<Digest>,
    pub config_digest: Digest,
    /// The platform the image config names, if it names one.
    pub platform: Option<Platform>,
    /// Layers bottom first, as the manifest lists them.
    pub layers: Vec<Layer>,
    /// Where the config blob is, for [`read_config`].
    pub(super) config_blob: BlobRef,
    pub(super) store: Arc<Store>,
}

/// The bytes of `image`'s config blob (at most [`CONFIG_LIMIT`]), read again and verified
/// against [`Image::config_digest`].
pub fn read_config(image: &Image) -> Result<Vec<u8>, ImageError> {
    let what = format!("image config {}", image.config_digest);
    image
        .store
        .read_blob(&image.config_blob, CONFIG_LIMIT, &what)
}

/// One layer of an [`Image`].
#[derive(Debug, Clone)]
pub struct Layer {
    /// Position in the manifest, 0 = bottom.
    pub index: usize,
    /// Digest of the blob as stored (compressed, if it is).
    pub digest: Digest,
    pub media_type: String,
    pub compression: Compression,
    /// Size of the blob as stored.
    pub size: u64,
    /// The config's `rootfs.diff_ids` entry: sha256 of the uncompressed tar.
    pub diff_id: Digest,
    blob: BlobRef,
    store: Arc<Store>,
}

impl Layer {
    /// Opens the blob through a reader that fails at end of file unless the blob matches
    /// its digest and size. Call [`BlobReader::finish`] after a consumer that may stop
    /// early (a tar reader) so the whole blob is checked.
    pub fn open(&self) -> Result<BlobReader, ImageError> {
        self.store.open_blob(&self.blob)
    }

    /// The file holding the blob's bytes, as they are stored, and the offset they start
    /// at: the blob file of an OCI layout directory (offset 0) or the `docker save` / OCI
    /// archive (the member's offset), for referencing an uncompressed layer in place. The
    /// bytes are not read here: read them through [`Self::open`] to check them.
    pub fn file_range(&self) -> Result<(PathBuf, u64), ImageError> {
        self.store.file_range(&self.blob)
    }

    /// Where the blob is, for messages.
    pub fn location(&self) -> String {
        self.store.location(&self.blob.path)
    }

    pub(crate) fn new(
        index: usize,
        blob: BlobRef,
        media_type: String,
        compression: Compression,
        diff_id: Digest,
        store: &Arc<Store>,
    ) -> Self {
        Self {
            index,
            digest: blob.digest.clone(),
            media_type,
            compression,
            size: blob.size,
            diff_id,
            blob,
            store: Arc::clone(store),
        }
    }
}

/// Builds the layers of a manifest, checking media types and the diff id count.
pub(crate) fn layers_from_descriptors(
    store: &Arc<Store>,
    descriptors: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
    config: &Digest,
    what: &str,
) -> Result<Vec<Layer>, ImageError> {
    if descriptors.len() != diff_ids.len() {
        return Err(ImageError::LayerCountMismatch {
            config: config.to_string(),
            diff_ids: diff_ids.len(),
            layers: descriptors.len(),
        });
    }
    descriptors
        .into_iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(i, (d, diff_id))| {
            let name = format!("layer {i} ({}) of {what}", d.digest);
            let compression = layer_compression(&d.media_type, &name)?;
            let blob = BlobRef::oci(d.digest, d.size);
            Ok(Layer::new(
                i,
                blob,
                d.media_type,
                compression,
                diff_id,
                store,
            ))
        })
        .collect()
}

//! Every layer of a container image to an EROFS blob with dm-verity, keyed by the layer's
//! diff ID, in containerd's `layer_content_caches` layout (`sha256/<xx>/<hex>.erofs` +
//! `.dmverity`) or flat (`<hex>.erofs`): what `layerpass convert image` runs, as one call,
//! [`convert_image`], returning a typed report per layer.
//!
//! - `layout`: where a layer's blob goes in the output directory;
//! - `existing`: a layer already converted (sidecar parses, blob of the size it implies) is
//!   skipped;
//! - `index`: with [`LayerFormat::Index`], a layer becomes an index layer instead (EROFS
//!   metadata over its tar, referenced in place when the blob is a plain tar);
//! - `layer`: one layer converted under a temporary name, its blob read to the last byte
//!   through a verifying reader and its diff ID checked against the image config;
//! - `publish`: only then are the sidecar and the blob renamed into place, sidecar first,
//!   so that a reader never sees a blob without its sidecar and an interrupted run leaves
//!   no half-made blob.

mod counting;
mod error;
mod existing;
mod index;
mod layer;
mod layout;
mod options;
mod publish;
mod report;
mod tarstamp;

use std::fs;
use std::path::Path;

pub use counting::CountingReader;
pub use error::{ImageConvertError, LayerConvertError};
pub use index::Sha256Reader;
pub use layout::OutputLayout;
pub use options::{ConvertEvent, ImageConvertOptions, LayerFormat, Progress};
pub use report::{ImageConvertReport, IndexFiles, LayerConvertReport, LayerOutcome};

use crate::erofs::ConvertOptions;
use crate::erofs::index::IndexOptions;
use crate::image::open_image;

/// Converts every layer of the image at `source` (an OCI image layout directory, a
/// `docker save` tar or an OCI layout tar) into `opts.out_dir`, creating it if missing.
/// Layers already there are skipped; a layer that appears twice is converted once.
/// `progress` hears of the layers and of the blob bytes read, from any thread.
///
/// On error the layers before the failing one are complete and nothing is left of the
/// failing one.
pub fn convert_image(
    source: &Path,
    opts: &ImageConvertOptions,
    progress: Progress<'_>,
) -> Result<ImageConvertReport, ImageConvertError> {
    let image =
        open_image(source, opts.platform.as_ref()).map_err(|e| ImageConvertError::Image {
            path: source.to_owned(),
            source: e,
        })?;
    fs::create_dir_all(&opts.out_dir).map_err(|e| ImageConvertError::CreateDir {
        path: opts.out_dir.clone(),
        source: e,
    })?;
    let count = image.layers.len();
    progress(ConvertEvent::Started {
        layers: count,
        total_bytes: image.layers.iter().map(|l| l.size).sum(),
    });
    let layer_opts = ConvertOptions {
        no_verity: false,
        mkfs_time: opts.mkfs_time,
        max_layer_bytes: opts.max_layer_bytes,
        max_entries: opts.max_entries,
    };
    let index_opts = IndexOptions {
        mkfs_time: opts.mkfs_time,
        max_layer_bytes: opts.max_layer_bytes,
        max_entries: opts.max_entries,
    };
    let mut layers = Vec::with_capacity(count);
    for l in &image.layers {
        progress(ConvertEvent::Layer {
            index: l.index,
            layers: count,
        });
        let report = match opts.format {
            LayerFormat::Full => layer::convert_one(l, opts, &layer_opts, progress),
            LayerFormat::Index => index::index_one(l, opts, &index_opts, progress),
        }
        .map_err(|e| ImageConvertError::Layer {
            index: l.index,
            digest: l.digest.clone(),
            source: Box::new(e),
        })?;
        layers.push(report);
    }
    Ok(ImageConvertReport {
        source: source.to_owned(),
        format: image.format,
        manifest: image.manifest_digest,
        config: image.config_digest,
        platform: image.platform,
        layout: opts.layout,
        layer_format: opts.format,
        out_dir: opts.out_dir.clone(),
        layers,
    })
}

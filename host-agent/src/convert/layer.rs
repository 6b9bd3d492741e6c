//! One layer: skipped if already converted, else converted to a temporary name next to its
//! final path with its blob checked to the last byte and its diff ID compared with the
//! image config's, then published.

use std::fs;
use std::path::Path;

use layerpass_types::{HashAlgorithm, RootHash};

use super::counting::CountingReader;
use super::error::LayerConvertError;
use super::existing::{BlobInfo, already_converted};
use super::options::{ConvertEvent, ImageConvertOptions, Progress};
use super::publish::{discard, publish};
use super::report::{LayerConvertReport, LayerOutcome};
use crate::erofs::{ConvertOptions, convert_layer};
use crate::image::Layer;
use crate::verity::sidecar_path;

/// Converts `layer`, or reports the blob already in place.
pub(super) fn convert_one(
    layer: &Layer,
    opts: &ImageConvertOptions,
    layer_opts: &ConvertOptions,
    progress: Progress<'_>,
) -> Result<LayerConvertReport, LayerConvertError> {
    let span = tracing::info_span!("layer", index = layer.index, diff_id = %layer.diff_id);
    let _enter = span.enter();
    let path = opts.layout.blob_path(&opts.out_dir, &layer.diff_id);
    let report = |found: BlobInfo, outcome| LayerConvertReport {
        index: layer.index,
        diff_id: layer.diff_id.clone(),
        digest: layer.digest.clone(),
        media_type: layer.media_type.clone(),
        sidecar: sidecar_path(&path),
        path: path.clone(),
        size: found.size,
        root_hash: found.root_hash,
        hash_offset: found.hash_offset,
        index_files: None,
        outcome,
    };
    if let Some(found) = already_converted(&path) {
        tracing::info!(path = %path.display(), "already converted; skipped");
        progress(ConvertEvent::Read { bytes: layer.size });
        return Ok(report(found, LayerOutcome::Skipped));
    }
    let dir = layerpass_fsutil::dir_of(&path);
    fs::create_dir_all(dir).map_err(|source| LayerConvertError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let tmp = dir.join(format!(".{}.erofs.partial", layer.diff_id.hex()));
    let converted = convert_to(layer, &tmp, layer_opts, progress)
        .and_then(|found| publish(&tmp, &path).map(|()| found));
    match converted {
        Ok(found) => Ok(report(found, LayerOutcome::Converted)),
        Err(e) => {
            discard(&tmp);
            Err(e)
        }
    }
}

/// Converts `layer` into `tmp` (and its sidecar), checking the blob and the diff ID.
fn convert_to(
    layer: &Layer,
    tmp: &Path,
    opts: &ConvertOptions,
    progress: Progress<'_>,
) -> Result<BlobInfo, LayerConvertError> {
    let mut reader = layer.open()?;
    let converted = convert_layer(
        CountingReader::new(&mut reader, |bytes| progress(ConvertEvent::Read { bytes })),
        tmp,
        opts,
    );
    // The converter may stop at the tar's end marker: read and check the rest of the blob.
    // A corrupted blob often shows up first as a decompression or tar error; name the blob
    // when that is the cause.
    reader.finish()?;
    let report = converted?;
    if report.diff_id != layer.diff_id.as_str() {
        return Err(LayerConvertError::DiffIdMismatch {
            actual: report.diff_id,
            expected: layer.diff_id.clone(),
        });
    }
    let (Some(root), Some(hash_offset)) = (report.root_hash, report.hash_offset) else {
        return Err(LayerConvertError::NoVerityTree {
            path: tmp.to_owned(),
        });
    };
    let root_hash =
        RootHash::parse(&root, HashAlgorithm::Sha256).map_err(LayerConvertError::BadRootHash)?;
    Ok(BlobInfo {
        root_hash,
        hash_offset,
        size: report.blob_size,
    })
}

//! `layerpass::convert::convert_image` as a library call: typed per-layer reports (diff ID
//! and root hash typed, converted or skipped), the progress events a caller sees, and typed
//! errors naming the layer and what was wrong. The command-line behaviour is
//! `convert_image.rs`.

// Helpers of a test binary are test code: unwrap as in #[test] functions.
#![allow(clippy::unwrap_used)]

mod image_support;

use std::fs;
use std::sync::Mutex;

use image_support::*;
use layerpass::convert::{
    ConvertEvent, ImageConvertError, ImageConvertOptions, LayerConvertError, LayerOutcome,
    OutputLayout, convert_image,
};
use layerpass::image::ImageError;
use layerpass::verity::{Sidecar, sidecar_path};
use layerpass_types::Digest;

/// Converts, returning the report and every progress event in order.
fn run(
    image: &std::path::Path,
    opts: &ImageConvertOptions,
) -> (
    Result<layerpass::convert::ImageConvertReport, ImageConvertError>,
    Vec<ConvertEvent>,
) {
    let events = Mutex::new(Vec::new());
    let result = convert_image(image, opts, &|e| events.lock().unwrap().push(e));
    (result, events.into_inner().unwrap())
}

/// Bytes announced by `Started` and bytes reported read, in that order.
fn byte_totals(events: &[ConvertEvent]) -> (u64, u64) {
    let ConvertEvent::Started { total_bytes, .. } = events[0] else {
        panic!("first event is {:?}", events[0]);
    };
    let read = events
        .iter()
        .map(|e| match e {
            ConvertEvent::Read { bytes } => *bytes,
            _ => 0,
        })
        .sum();
    (total_bytes, read)
}

#[test]
fn typed_reports_and_progress_then_a_rerun_skips() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let layers = three_layers("lib");
    oci.write_index(vec![oci.image(&layers, Some("linux/amd64"))]);
    let out = dir.path().join("cache");
    let opts = ImageConvertOptions::new(OutputLayout::ContainerdCache, &out);

    let (report, events) = run(&layout, &opts);
    let report = report.unwrap();
    assert_eq!(report.layout, OutputLayout::ContainerdCache);
    assert_eq!(report.layers.len(), 3);
    for (l, spec) in report.layers.iter().zip(&layers) {
        let diff_id = Digest::parse(&spec.diff_id).unwrap();
        assert_eq!(l.diff_id, diff_id);
        assert_eq!(l.digest, Digest::parse(&digest(&spec.blob)).unwrap());
        assert_eq!(l.outcome, LayerOutcome::Converted);
        assert_eq!(
            l.path,
            out.join("sha256")
                .join(&diff_id.hex()[..2])
                .join(format!("{}.erofs", diff_id.hex()))
        );
        assert_eq!(l.sidecar, sidecar_path(&l.path));
        assert_eq!(fs::metadata(&l.path).unwrap().len(), l.size);
        let sidecar = Sidecar::read(&l.sidecar).unwrap();
        assert_eq!(sidecar.roothash, l.root_hash.to_hex());
        assert_eq!(sidecar.hashoffset, l.hash_offset);
    }
    let total: u64 = layers.iter().map(|l| l.blob.len() as u64).sum();
    assert_eq!(byte_totals(&events), (total, total));
    let starts: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            ConvertEvent::Layer { index, layers: 3 } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [0, 1, 2]);

    let (again, events) = run(&layout, &opts);
    let again = again.unwrap();
    for (l, first) in again.layers.iter().zip(&report.layers) {
        assert!(l.skipped());
        assert_eq!(
            (&l.root_hash, l.hash_offset, l.size),
            (&first.root_hash, first.hash_offset, first.size)
        );
    }
    assert_eq!(byte_totals(&events), (total, total));
}

#[test]
fn errors_are_typed_and_name_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let real = LayerSpec::new(LAYER_GZIP, &layer_tar(&[("a", b"real content")]));
    let mut lying = real.clone();
    lying.diff_id = digest(&layer_tar(&[("a", b"other content")]));
    oci.write_index(vec![oci.image(&[lying.clone()], None)]);
    let out = dir.path().join("out");
    let opts = ImageConvertOptions::new(OutputLayout::Flat, &out);
    let (result, _) = run(&layout, &opts);
    let ImageConvertError::Layer {
        index: 0,
        digest: layer_digest,
        source,
    } = result.unwrap_err()
    else {
        panic!("not a layer error");
    };
    assert_eq!(layer_digest.as_str(), digest(&real.blob));
    match *source {
        LayerConvertError::DiffIdMismatch { actual, expected } => {
            assert_eq!(actual, real.diff_id);
            assert_eq!(expected.as_str(), lying.diff_id);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing left");

    let layout = dir.path().join("tampered");
    let oci = OciDir::new(&layout);
    let layers = three_layers("bad");
    oci.write_index(vec![oci.image(&layers, None)]);
    let blob = layout
        .join("blobs/sha256")
        .join(&digest(&layers[1].blob)[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&blob, bytes).unwrap();
    let (result, _) = run(&layout, &opts);
    let err = result.unwrap_err();
    let ImageConvertError::Layer {
        index: 1, source, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        matches!(
            **source,
            LayerConvertError::Blob(ImageError::DigestMismatch { .. })
        ),
        "{err:?}"
    );

    let (result, events) = run(&dir.path().join("missing"), &opts);
    assert!(
        matches!(result, Err(ImageConvertError::Image { .. })),
        "{result:?}"
    );
    assert!(events.is_empty(), "{events:?}");
}

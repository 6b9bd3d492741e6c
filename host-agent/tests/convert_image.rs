//! `layerpass convert image` end to end: generated images converted by the real binary into
//! containerd's `layer_content_caches` layout and the flat layout, every blob checked with
//! the dm-verity verifier against its sidecar, re-runs skipping work, and bad input leaving
//! nothing behind.

// Helpers of a test binary are test code: unwrap as in #[test] functions.
#![allow(clippy::unwrap_used)]

mod image_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_support::*;
use layerpass::verity::{Sidecar, VerifyOptions, VerityParams, sidecar_path, verify_file};
use serde_json::Value;

fn layerpass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(args)
        .env("LAYERPASS_LOG", "warn")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("the layerpass binary runs")
}

fn convert(image: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "convert",
        "image",
        image.to_str().unwrap(),
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = layerpass(&args);
    assert!(
        o.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON object on stdout")
}

fn convert_err(image: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "convert",
        "image",
        image.to_str().unwrap(),
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = layerpass(&args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Checks one reported layer: path, EROFS magic, sidecar, and the whole tree against the
/// sidecar's root hash.
fn check_layer(l: &Value, expected_path: &Path, diff_id: &str) {
    assert_eq!(l["diff_id"], diff_id);
    let path = PathBuf::from(l["path"].as_str().unwrap());
    assert_eq!(path, expected_path);
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, l["size"].as_u64().unwrap());
    assert_eq!(
        &bytes[1024..1028],
        &0xE0F5_E1E2u32.to_le_bytes(),
        "EROFS magic in {}",
        path.display()
    );
    let sidecar = Sidecar::read(&sidecar_path(&path)).unwrap();
    assert_eq!(sidecar.roothash, l["root_hash"].as_str().unwrap());
    assert_eq!(sidecar.hashoffset, l["hash_offset"].as_u64().unwrap());
    let opts = VerifyOptions {
        params: VerityParams::containerd(),
        superblock: true,
        hash_file: None,
        hash_offset: None,
        data_blocks: None,
    };
    let report = verify_file(&path, &sidecar.roothash, &opts, None).unwrap();
    assert_eq!(report.hash_offset, sidecar.hashoffset);
}

fn cache_path(out: &Path, diff_id: &str) -> PathBuf {
    let hex = &diff_id[7..];
    out.join("sha256")
        .join(&hex[..2])
        .join(format!("{hex}.erofs"))
}

#[test]
fn three_layer_image_to_containerd_cache_then_rerun_skips() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let layers = three_layers("e2e");
    oci.write_index(vec![oci.image(&layers, Some("linux/amd64"))]);
    let out = dir.path().join("cache");

    let report = convert(&layout, &out, &["--layout", "containerd-cache"]);
    let reported = report["layers"].as_array().unwrap();
    assert_eq!(reported.len(), 3);
    let mut expected_files = Vec::new();
    for (l, spec) in reported.iter().zip(&layers) {
        let path = cache_path(&out, &spec.diff_id);
        check_layer(l, &path, &spec.diff_id);
        assert_eq!(l["digest"], digest(&spec.blob));
        assert_eq!(l["skipped"], false);
        let rel = path
            .strip_prefix(&out)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        expected_files.push(format!("{rel}.dmverity"));
        expected_files.push(rel);
    }
    expected_files.sort();
    assert_eq!(
        files(&out),
        expected_files,
        "only blobs and sidecars, no temporary files"
    );
    let before: Vec<(u64, i64)> = reported
        .iter()
        .map(|l| {
            let m = fs::metadata(l["path"].as_str().unwrap()).unwrap();
            (m.ino(), m.mtime_nsec())
        })
        .collect();

    let again = convert(&layout, &out, &["--layout", "containerd-cache"]);
    for (i, l) in again["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l["skipped"], true, "layer {i} converted again");
        assert_eq!(l["root_hash"], reported[i]["root_hash"]);
        assert_eq!(l["size"], reported[i]["size"]);
        let m = fs::metadata(l["path"].as_str().unwrap()).unwrap();
        assert_eq!(
            (m.ino(), m.mtime_nsec()),
            before[i],
            "layer {i} was rewritten"
        );
    }

    // A blob cut short (an interrupted copy) is converted again, to the same bytes.
    let victim = cache_path(&out, &layers[1].diff_id);
    let full = fs::read(&victim).unwrap();
    fs::write(&victim, &full[..full.len() - 4096]).unwrap();
    let third = convert(&layout, &out, &[]);
    assert_eq!(third["layers"][1]["skipped"], false);
    assert_eq!(third["layers"][0]["skipped"], true);
    assert_eq!(
        fs::read(&victim).unwrap(),
        full,
        "conversion is reproducible"
    );
}

#[test]
fn docker_archive_to_flat_layout() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("img.tar");
    let tars = vec![
        layer_tar(&[
            ("bin/sh", b"#!shell"),
            ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        ]),
        layer_tar(&[("etc/.wh.passwd", b"")]),
        layer_tar(&[("srv/big", &[3u8; 100_000])]),
        layer_tar(&[]),
        // The same layer twice (docker stores it as a symlink): one blob, converted once.
        layer_tar(&[("srv/big", &[3u8; 100_000])]),
    ];
    docker_legacy(&archive, &tars, "linux/amd64", "flat:1");
    let out = dir.path().join("flat");
    let report = convert(&archive, &out, &["--layout", "flat"]);
    assert_eq!(report["format"], "docker-archive");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 5);
    for (l, t) in layers.iter().zip(&tars) {
        let d = digest(t);
        check_layer(l, &out.join(format!("{}.erofs", &d[7..])), &d);
    }
    let skipped: Vec<bool> = layers
        .iter()
        .map(|l| l["skipped"].as_bool().unwrap())
        .collect();
    assert_eq!(skipped, [false, false, false, false, true]);
    assert_eq!(files(&out).len(), 8);
}

#[test]
fn tampered_blob_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let layers = three_layers("bad");
    oci.write_index(vec![oci.image(&layers, None)]);
    let blob = layout
        .join("blobs/sha256")
        .join(&digest(&layers[2].blob)[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&blob, bytes).unwrap();
    let out = dir.path().join("out");
    let err = convert_err(&layout, &out, &[]);
    assert!(
        err.contains(&digest(&layers[2].blob)) && err.contains("layer 2"),
        "{err}"
    );
    assert!(
        err.contains("does not match its digest") && err.contains(blob.to_str().unwrap()),
        "{err}"
    );
    // Layers 0 and 1 are complete; nothing of layer 2, not even a temporary file.
    let left = files(&out);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(!cache_path(&out, &layers[2].diff_id).exists());
}

#[test]
fn diff_id_mismatch_fails_and_removes_output() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let real = LayerSpec::new(LAYER_GZIP, &layer_tar(&[("a", b"real content")]));
    // The config claims the diff id of another tar.
    let mut lying = real.clone();
    lying.diff_id = digest(&layer_tar(&[("a", b"other content")]));
    oci.write_index(vec![oci.image(&[lying.clone()], None)]);
    let out = dir.path().join("out");
    let err = convert_err(&layout, &out, &["--layout", "flat"]);
    assert!(
        err.contains(&real.diff_id) && err.contains(&lying.diff_id),
        "{err}"
    );
    assert_eq!(files(&out), Vec::<String>::new());
}

#[test]
fn platform_errors_reach_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let arm = oci.image(&three_layers("arm"), Some("linux/arm64"));
    oci.write_index(vec![arm]);
    let out = dir.path().join("out");
    let err = convert_err(&layout, &out, &[]);
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    let report = convert(&layout, &out, &["--platform", "linux/arm64"]);
    assert_eq!(report["platform"], "linux/arm64");
    let o = layerpass(&["convert", "image", "x", "y", "--platform", "linux"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a platform"));
}

#[test]
fn tampering_after_the_tar_end_marker_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    // A plain tar ends with two zero blocks that carry no entries: a change there alters no
    // file, and only the blob digest check (at the converter's end of input, or in
    // finish() if the converter stops early) can see it.
    let layer = LayerSpec::new(LAYER_TAR, &layer_tar(&[("etc/issue", b"hello\n")]));
    oci.write_index(vec![oci.image(std::slice::from_ref(&layer), None)]);
    let blob = layout.join("blobs/sha256").join(&digest(&layer.blob)[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    assert_eq!(bytes[last], 0);
    bytes[last] = 1;
    fs::write(&blob, bytes).unwrap();
    let out = dir.path().join("out");
    let err = convert_err(&layout, &out, &[]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert_eq!(files(&out), Vec::<String>::new());
}

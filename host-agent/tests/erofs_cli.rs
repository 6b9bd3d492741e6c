//! `layerpass convert layer`: text and JSON output, `--mkfs-time` and `SOURCE_DATE_EPOCH`,
//! `--no-verity`, errors on stderr with a non-zero status.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::path::Path;
use std::process::Command;

use common::corpus;

fn layerpass() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_layerpass"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

fn build_time(image: &Path) -> u64 {
    let b = std::fs::read(image).unwrap();
    u64::from_le_bytes(b[1024 + 24..1024 + 32].try_into().unwrap())
}

#[test]
fn convert_layer_cli() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar.gz");
    std::fs::write(&tar, common::tars::gzip(&corpus::whiteouts())).unwrap();

    // text output, verity on by default
    let out = dir.path().join("a.erofs");
    let o = layerpass()
        .args(["convert", "layer"])
        .arg(&tar)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("diff id:    sha256:") && text.contains("root hash:"),
        "{text}"
    );
    assert!(dir.path().join("a.erofs.dmverity").is_file());
    assert_eq!(build_time(&out), 0);

    // JSON, SOURCE_DATE_EPOCH as build time, --mkfs-time overriding it
    let out_b = dir.path().join("b.erofs");
    let o = layerpass()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["convert", "layer", "--json"])
        .arg(&tar)
        .arg(&out_b)
        .output()
        .unwrap();
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["path"], out_b.display().to_string());
    assert_eq!(j["hash_offset"], j["erofs_size"]);
    assert_eq!(build_time(&out_b), 1_700_000_000);
    let out_c = dir.path().join("c.erofs");
    let o = layerpass()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "convert",
            "layer",
            "--json",
            "--no-verity",
            "--mkfs-time",
            "42",
        ])
        .arg(&tar)
        .arg(&out_c)
        .output()
        .unwrap();
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["root_hash"].is_null());
    assert_eq!(j["blob_size"], j["erofs_size"]);
    assert_eq!(build_time(&out_c), 42);
    assert!(!dir.path().join("c.erofs.dmverity").exists());

    // a bad layer: non-zero status, the entry named on stderr, nothing written
    let bad = dir.path().join("bad.tar");
    let mut t = common::tars::Tar::new();
    t.hardlink("l", "missing");
    std::fs::write(&bad, t.finish()).unwrap();
    let out_d = dir.path().join("d.erofs");
    let o = layerpass()
        .args(["convert", "layer"])
        .arg(&bad)
        .arg(&out_d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\"missing\"") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!out_d.exists());
    let o = layerpass()
        .env("SOURCE_DATE_EPOCH", "soon")
        .args(["convert", "layer"])
        .arg(&tar)
        .arg(&out_d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("SOURCE_DATE_EPOCH"));
}

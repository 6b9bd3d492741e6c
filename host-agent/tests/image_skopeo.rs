//! Reads images written by a real tool, skopeo (Debian package `skopeo`): OCI layouts with
//! gzip and zstd layers, an OCI archive and a docker archive, all converted by skopeo from a
//! docker archive built here. A missing skopeo follows the skip policy (a failure unless
//! `LAYERPASS_ALLOW_SKIP=1`; `apt-get install skopeo`).

// Helpers of a test binary are test code: unwrap as in #[test] functions.
#![allow(clippy::unwrap_used)]

mod image_support;

use std::path::Path;
use std::process::Command;

use image_support::*;
use layerpass::image::{Compression, SourceFormat, open_image};
use layerpass::verity::{Sidecar, VerifyOptions, VerityParams, sidecar_path, verify_file};

fn skopeo_copy(skopeo: &Path, extra: &[&str], from: &str, to: &str) {
    let out = Command::new(skopeo)
        .arg("--insecure-policy")
        .arg("copy")
        .args(["--quiet"])
        .args(extra)
        .args([from, to])
        .output()
        .expect("cannot run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(path: &Path, format: SourceFormat, compression: Compression, tars: &[Vec<u8>]) {
    let img = open_image(path, None).unwrap();
    assert_eq!(img.format, format);
    assert_eq!(img.layers.len(), tars.len());
    for (l, t) in img.layers.iter().zip(tars) {
        assert_eq!(
            l.compression,
            compression,
            "layer {} of {}",
            l.index,
            path.display()
        );
        assert_eq!(l.diff_id.as_str(), digest(t));
        assert_eq!(read_layer(l).unwrap(), *t);
    }
}

#[test]
fn reads_what_skopeo_writes() {
    let Some(skopeo) = layerpass_test_support::tools::require_tool("skopeo", "skopeo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tars = vec![
        layer_tar(&[("etc/os-release", b"ID=test\n"), ("etc/motd", b"hello\n")]),
        layer_tar(&[("usr/bin/app", &[0x5au8; 300_000])]),
        layer_tar(&[("srv/data", b"top layer\n")]),
    ];
    let source = d.join("source.tar");
    docker_legacy(&source, &tars, "linux/amd64", "example/skopeo:1");
    let src = format!("docker-archive:{}", source.display());

    let gz = d.join("oci-gzip");
    skopeo_copy(&skopeo, &[], &src, &format!("oci:{}:v1", gz.display()));
    check(&gz, SourceFormat::OciLayout, Compression::Gzip, &tars);

    let zst = d.join("oci-zstd");
    skopeo_copy(
        &skopeo,
        &["--dest-compress-format", "zstd"],
        &src,
        &format!("oci:{}:v1", zst.display()),
    );
    check(&zst, SourceFormat::OciLayout, Compression::Zstd, &tars);

    let oci_archive = d.join("oci.tar");
    skopeo_copy(
        &skopeo,
        &[],
        &format!("oci:{}:v1", gz.display()),
        &format!("oci-archive:{}", oci_archive.display()),
    );
    check(
        &oci_archive,
        SourceFormat::OciArchive,
        Compression::Gzip,
        &tars,
    );

    let docker_archive = d.join("docker.tar");
    skopeo_copy(
        &skopeo,
        &[],
        &format!("oci:{}:v1", gz.display()),
        &format!(
            "docker-archive:{}:example/roundtrip:1",
            docker_archive.display()
        ),
    );
    check(
        &docker_archive,
        SourceFormat::DockerArchive,
        Compression::None,
        &tars,
    );

    // The real binary converts skopeo's zstd layout; every blob verifies against its sidecar.
    let out = d.join("cache");
    let o = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["convert", "image", "--json"])
        .args([&zst, &out])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), tars.len());
    for (l, t) in layers.iter().zip(&tars) {
        let hex = &digest(t)[7..];
        let path = out
            .join("sha256")
            .join(&hex[..2])
            .join(format!("{hex}.erofs"));
        assert_eq!(l["path"].as_str().unwrap(), path.to_str().unwrap());
        assert_eq!(
            l["media_type"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let sidecar = Sidecar::read(&sidecar_path(&path)).unwrap();
        let opts = VerifyOptions {
            params: VerityParams::containerd(),
            superblock: true,
            hash_file: None,
            hash_offset: None,
            data_blocks: None,
        };
        verify_file(&path, &sidecar.roothash, &opts, None).unwrap();
    }
}

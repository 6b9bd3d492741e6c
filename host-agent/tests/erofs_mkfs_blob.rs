//! A blob made by erofs-utils 1.5 `mkfs.erofs` from a directory (the containerd differ's
//! other source of blobs) goes through the same verity and sidecar path as our images:
//! root hash equal to `veritysetup format` with the same parameters, sidecar, mountable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::process::Command;

use common::{mount::Mount, tools};
use layerpass::erofs::{ErofsError, add_verity, verity_uuid};
use layerpass::verity::{Sidecar, sidecar_path};

#[test]
fn mkfs_erofs_directory_blob_gets_verity_and_sidecar() {
    // every tool first: the check runs whole or not at all
    let (Some(mkfs), Some(veritysetup)) = (
        tools::require_tool("mkfs.erofs", "erofs-utils"),
        tools::require_tool("veritysetup", "cryptsetup-bin"),
    ) else {
        return;
    };
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/file"), vec![3u8; 12_345]).unwrap();
    std::fs::write(src.join("small"), b"small").unwrap();
    let blob = dir.path().join("blob.erofs");
    tools::run(
        Command::new(mkfs)
            .args([
                "-T0",
                "-U",
                "00000000-0000-0000-0000-000000000000",
                "--all-root",
            ])
            .arg(&blob)
            .arg(&src),
    );
    let erofs_size = std::fs::metadata(&blob).unwrap().len();
    assert_eq!(erofs_size % 4096, 0, "mkfs.erofs 1.5 writes whole blocks");
    let copy = dir.path().join("copy.erofs");
    std::fs::copy(&blob, &copy).unwrap();

    let uuid = verity_uuid("sha256:test");
    let report = add_verity(&blob, &blob, uuid).unwrap();
    assert_eq!(report.hash_offset, erofs_size);
    let sidecar = Sidecar::read(&sidecar_path(&blob)).unwrap();
    assert_eq!(
        (sidecar.roothash.as_str(), sidecar.hashoffset),
        (report.root_hash.as_str(), erofs_size)
    );

    let out = tools::run(
        Command::new(&veritysetup)
            .args([
                "format",
                "--salt",
                &"00".repeat(32),
                "--uuid",
                &uuid.to_string(),
            ])
            .arg(format!("--hash-offset={erofs_size}"))
            .arg(&copy)
            .arg(&copy),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(root, report.root_hash);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&blob).unwrap(),
        "same bytes as veritysetup"
    );
    tools::run(
        Command::new(&veritysetup)
            .arg("verify")
            .arg(format!("--hash-offset={erofs_size}"))
            .arg(&blob)
            .arg(&blob)
            .arg(&report.root_hash),
    );
    tools::fsck(&blob);
    let m = Mount::erofs(&blob);
    assert_eq!(std::fs::read(m.path().join("small")).unwrap(), b"small");
    assert_eq!(
        std::fs::read(m.path().join("d/file")).unwrap(),
        vec![3u8; 12_345]
    );
}

#[test]
fn add_verity_refuses_a_file_that_is_not_erofs() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    std::fs::write(&f, vec![0u8; 8192]).unwrap();
    assert!(matches!(
        add_verity(&f, &f, verity_uuid("x")),
        Err(ErofsError::NotErofs { .. })
    ));
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 8192);
    assert!(!sidecar_path(&f).exists());
}

//! Real-world tars: the data members of Debian packages (gzip and zstd recompressed too),
//! converted, checked by fsck.erofs, mounted and compared with what the tar says.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use common::{debian, model, mount::Mount, tars, tools, walk};
use layerpass::erofs::{ConvertOptions, convert_layer};
use layerpass_test_support::counted;

#[test]
fn debian_package_tars_mount_as_the_tar_says() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for pkg in debian::PACKAGES {
        let Some(tar) = debian::data_tar(pkg) else {
            return;
        };
        let out = dir.path().join(format!("{pkg}.erofs"));
        let report = convert_layer(&tar[..], &out, &ConvertOptions::default()).unwrap();
        tools::fsck(&out);
        let want = model::expected(&tar, 0);
        assert!(want.tree.len() > 10, "{pkg}: {} paths", want.tree.len());
        let m = Mount::erofs(&out);
        walk::assert_same(pkg, &want.tree, &walk::walk(m.path()), &[]);
        drop(m);
        // the same layer compressed gives the same blob
        let z = convert_layer(
            &tars::zstd(&tar)[..],
            &dir.path().join("z.erofs"),
            &ConvertOptions::default(),
        )
        .unwrap();
        assert_eq!(z.root_hash, report.root_hash, "{pkg} zstd");
        assert_eq!(
            std::fs::read(&z.path).unwrap(),
            std::fs::read(&out).unwrap(),
            "{pkg} zstd bytes"
        );
        checked += 1;
    }
    counted::compared(
        checked,
        debian::PACKAGES.len(),
        "Debian package tars mounted as the tar says (and zstd gives the same bytes)",
    );
}

#[test]
fn gzip_debian_tar_converts_twice_to_the_same_bytes() {
    let Some(tar) = debian::data_tar("coreutils") else {
        return;
    };
    let gz = tars::gzip(&tar);
    let dir = tempfile::tempdir().unwrap();
    let a = convert_layer(
        &gz[..],
        &dir.path().join("a.erofs"),
        &ConvertOptions::default(),
    )
    .unwrap();
    let b = convert_layer(
        &gz[..],
        &dir.path().join("b.erofs"),
        &ConvertOptions::default(),
    )
    .unwrap();
    assert_eq!(a.root_hash, b.root_hash);
    assert_eq!(
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap()
    );
}

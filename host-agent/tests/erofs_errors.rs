//! Malformed layers: each gives a clear error naming the entry and what was wrong, and
//! leaves nothing behind (no output, no sidecar, no temporary file; an existing output
//! is left as it was).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::fs;
use std::path::Path;

use common::tars::{self, Tar};
use layerpass::erofs::{ConvertOptions, ErofsError, convert_layer};
use tar::EntryType;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Converts `input` into a directory holding an older `out.erofs`; the conversion must
/// fail, leave the directory as it was, and give an error whose chain says `expect`.
fn fails(input: &[u8], expect: &[&str]) -> ErofsError {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.erofs");
    fs::write(&out, b"previous blob").unwrap();
    let before = listing(dir.path());
    let err =
        convert_layer(input, &out, &ConvertOptions::default()).expect_err("conversion must fail");
    let mut chain = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    for e in expect {
        assert!(chain.contains(e), "error {chain:?} should mention {e:?}");
    }
    assert_eq!(
        listing(dir.path()),
        before,
        "files left behind after: {chain}"
    );
    assert_eq!(fs::read(&out).unwrap(), b"previous blob");
    err
}

fn good_tar() -> Vec<u8> {
    let mut t = Tar::new();
    t.file("a", 0o644, &vec![7u8; 10_000]);
    t.file("b", 0o644, b"b");
    t.finish()
}

#[test]
fn truncated_tar_is_an_error() {
    let tar = good_tar();
    // cut inside the content of "a"
    let err = fails(&tar[..512 + 6000], &["\"a\"", "truncated", "10000"]);
    assert!(matches!(err, ErofsError::Truncated { .. }), "{err:?}");
    // cut inside the header of "b"
    fails(&tar[..512 + 10240 + 100], &["ends inside a header"]);
}

#[test]
fn bad_header_checksum_is_an_error() {
    let mut tar = good_tar();
    tar[512 + 10240 + 3] ^= 0x20; // a byte of b's name
    let err = fails(&tar, &["after entry \"a\"", "checksum"]);
    assert!(matches!(err, ErofsError::Tar { .. }), "{err:?}");
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut gz = tars::gzip(&good_tar());
    let mid = gz.len() / 2;
    for b in &mut gz[20..mid] {
        *b ^= 0x5a;
    }
    let err = fails(&gz, &["gzip"]);
    assert!(
        matches!(err, ErofsError::Decompress { format: "gzip", .. }),
        "{err:?}"
    );
    // a gzip magic followed by nothing gzip
    fails(
        b"\x1f\x8b\x08\x00garbage that is not deflate at all..........",
        &["gzip"],
    );
}

#[test]
fn corrupt_zstd_is_an_error() {
    let mut z = tars::zstd(&good_tar());
    let n = z.len();
    z.truncate(n - 8);
    fails(&z, &["zstd"]);
}

#[test]
fn path_escape_is_rejected_naming_the_entry() {
    let mut t = Tar::new();
    t.file("ok", 0o644, b"x");
    t.raw_name(b'0', b"a/../../etc/passwd", b"evil");
    let err = fails(&t.finish(), &["a/../../etc/passwd", "escapes"]);
    assert!(matches!(err, ErofsError::PathEscape { .. }), "{err:?}");
}

#[test]
fn nul_in_a_pax_path_is_rejected() {
    let mut t = Tar::new();
    t.pax(&[("path", b"bad\0name")]).file("x", 0o644, b"x");
    fails(&t.finish(), &["NUL"]);
}

#[test]
fn hardlink_to_a_missing_or_later_file_is_rejected() {
    let mut t = Tar::new();
    t.hardlink("link", "target");
    t.file("target", 0o644, b"appears later");
    let err = fails(&t.finish(), &["\"link\"", "\"target\"", "does not exist"]);
    assert!(matches!(err, ErofsError::BadHardlink { .. }), "{err:?}");
}

#[test]
fn hardlink_to_a_whiteout_is_rejected() {
    let mut t = Tar::new();
    t.file("f", 0o644, b"x");
    t.file(".wh.f", 0o644, b"");
    t.hardlink("link", "f");
    fails(&t.finish(), &["\"link\"", "whiteout"]);
}

#[test]
fn hardlink_to_a_directory_is_rejected() {
    let mut t = Tar::new();
    t.dir("d", 0o755);
    t.hardlink("link", "d");
    fails(&t.finish(), &["\"link\"", "directory"]);
}

#[test]
fn entry_under_a_file_is_rejected() {
    let mut t = Tar::new();
    t.file("f", 0o644, b"x");
    t.file("f/child", 0o644, b"y");
    fails(&t.finish(), &["f/child", "not a directory"]);
}

#[test]
fn unsupported_entry_types_and_xattrs_are_rejected() {
    let mut t = Tar::new();
    t.raw_name(b'V', b"volume-label", b"");
    fails(&t.finish(), &["volume-label", "unsupported entry type"]);
    let mut t = Tar::new();
    t.pax(&[("SCHILY.xattr.system.nfs4_acl", b"x")])
        .file("f", 0o644, b"x");
    fails(&t.finish(), &["\"f\"", "system.nfs4_acl"]);
    let mut t = Tar::new();
    t.entry(EntryType::Symlink, "empty-link", 0o777, 0, 0, b"");
    fails(&t.finish(), &["empty-link", "target is empty"]);
}

#[test]
fn sockets_are_skipped_not_rejected() {
    let mut t = Tar::new();
    t.entry(EntryType::Regular, "sock", 0o140_755, 0, 0, b"");
    t.file("kept", 0o644, b"k");
    let dir = tempfile::tempdir().unwrap();
    let r = convert_layer(
        &t.finish()[..],
        &dir.path().join("s.erofs"),
        &ConvertOptions::default(),
    )
    .unwrap();
    assert!(r.erofs_size > 0);
}

#[test]
fn gnu_sparse_files_are_rejected() {
    // PAX form (GNU tar --format=pax --sparse): the content would be the sparse map
    let mut t = Tar::new();
    t.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.realsize", b"100000"),
    ])
    .file("GNUSparseFile.0/holes", 0o644, b"1\n0\n512\n");
    fails(&t.finish(), &["sparse"]);
    // old GNU form (typeflag S)
    let mut t = Tar::new();
    t.raw_name(b'S', b"holes", b"");
    fails(&t.finish(), &["sparse"]);
}

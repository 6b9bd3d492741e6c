//! Three converted layers stacked under overlayfs on the host: whiteouts hide lower
//! files and directories, an opaque directory hides everything below it, and the merged
//! view is exactly what applying the three tars in order gives.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::path::PathBuf;

use common::walk::{self, Kind};
use common::{mount::Mount, tars::Tar, tools};
use layerpass::erofs::{ConvertOptions, convert_layer};

fn layers() -> [Vec<u8>; 3] {
    let mut base = Tar::new();
    base.dir("etc", 0o755);
    base.file("etc/passwd", 0o644, b"root:x:0:0\n");
    base.file("etc/shadow", 0o600, b"secret");
    base.dir("var/cache", 0o755);
    base.file("var/cache/a", 0o644, b"a");
    base.file("var/cache/b", 0o644, b"b");
    base.dir("opt/tool", 0o755);
    base.file("opt/tool/bin", 0o755, b"v1");
    base.file("opt/tool/lib", 0o644, b"lib1");
    let mut mid = Tar::new();
    mid.file("etc/.wh.shadow", 0o644, b""); // remove a file
    mid.file("etc/hostname", 0o644, b"mid");
    mid.dir("var/cache", 0o755);
    mid.file("var/cache/.wh..wh..opq", 0o644, b""); // empty the directory
    mid.file("var/cache/c", 0o644, b"c");
    mid.file("opt/tool/bin", 0o755, b"v2"); // replace a file
    let mut top = Tar::new();
    top.file("opt/.wh.tool", 0o644, b""); // remove a directory
    top.file("etc/hostname", 0o644, b"top");
    top.file("etc/.wh.passwd", 0o644, b"");
    top.file("etc/passwd", 0o644, b"new passwd\n"); // recreated in the same layer
    [base.finish(), mid.finish(), top.finish()]
}

#[test]
fn three_layers_stack_under_overlayfs() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    for (i, tar) in layers().iter().enumerate() {
        let out = dir.path().join(format!("l{i}.erofs"));
        convert_layer(&tar[..], &out, &ConvertOptions::default()).unwrap();
        tools::fsck(&out);
        mounts.push(Mount::erofs(&out));
    }
    let lowers: Vec<PathBuf> = mounts.iter().rev().map(|m| m.path().to_owned()).collect();
    let merged = Mount::overlay(&lowers);
    let tree = walk::walk(merged.path());
    let paths: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "",
            "etc",
            "etc/hostname",
            "etc/passwd",
            "opt",
            "var",
            "var/cache",
            "var/cache/c"
        ],
        "merged view"
    );
    let read = |p: &str| std::fs::read(merged.path().join(p)).unwrap();
    assert_eq!(read("etc/hostname"), b"top");
    assert_eq!(read("etc/passwd"), b"new passwd\n");
    assert_eq!(read("var/cache/c"), b"c");
    // no whiteout device or overlay xattr shows through the merged view
    for (p, n) in &tree {
        assert!(
            !matches!(n.kind, Kind::Char(0, 0)),
            "whiteout visible at {p}"
        );
        assert!(
            n.xattrs.keys().all(|k| !k.starts_with(b"trusted.overlay.")),
            "overlay xattr visible at {p}"
        );
    }
    drop(merged);
    drop(mounts);
}

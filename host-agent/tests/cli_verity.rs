//! `layerpass verity` as a user runs it: exit codes, JSON, error messages, rollback after a
//! real write failure, and bounded memory on a 4 GiB input.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn layerpass() -> Command {
    Command::new(env!("CARGO_BIN_EXE_layerpass"))
}

fn run(args: &[&str], dir: &Path) -> Output {
    layerpass().args(args).current_dir(dir).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    v.sort();
    v
}

#[test]
fn format_json_then_verify_and_detect_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("layer.erofs"), vec![b'a'; 4096 * 257]).unwrap();
    let out = run(&["verity", "format", "layer.erofs", "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "root_hash",
        "salt",
        "hash_offset",
        "data_blocks",
        "hash_start_block",
        "data_block_size",
        "hash_block_size",
        "hash_algorithm",
        "format",
    ] {
        assert!(json.get(key).is_some(), "--json lacks {key}: {json}");
    }
    // TV7: 257 blocks of 'a', containerd's zero salt.
    let root = "e8f91a81897ec51d849a339393cf7063ca370795f77a6ffbd8b1691e87c2ff43";
    assert_eq!(json["root_hash"], root);
    assert_eq!(json["hash_offset"], 4096 * 257);
    assert_eq!(json["hash_start_block"], 258);
    assert_eq!(entries(dir.path()), ["layer.erofs", "layer.erofs.dmverity"]);

    let ok = run(&["verity", "verify", "layer.erofs", root], dir.path());
    assert!(ok.status.success(), "{}", stderr(&ok));

    let p = dir.path().join("layer.erofs");
    let mut bytes = fs::read(&p).unwrap();
    bytes[4096 * 100 + 5] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let bad = run(&["verity", "verify", "layer.erofs", root], dir.path());
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("data block 100 (byte offset 409600) is corrupted"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn bad_input_is_named_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("empty"), b"").unwrap();
    fs::write(dir.path().join("odd"), vec![1u8; 5000]).unwrap();
    fs::write(dir.path().join("ok"), vec![1u8; 8192]).unwrap();
    let before = entries(dir.path());
    let cases: &[(&[&str], &str)] = &[
        (&["verity", "format", "empty"], "is empty"),
        (
            &["verity", "format", "odd"],
            "not a multiple of the data block size 4096 (904 trailing bytes",
        ),
        (&["verity", "format", "missing"], "cannot open missing"),
        (
            &["verity", "format", "ok", "--salt", "xyz"],
            "salt is not valid hex",
        ),
        (
            &["verity", "format", "ok", "--data-block-size", "3000"],
            "power of two",
        ),
        (
            &["verity", "format", "ok", "--hash-block-size", "1024000"],
            "power of two",
        ),
        (
            &["verity", "format", "ok", "--hash-offset", "4096"],
            "lies inside the data",
        ),
        (
            &["verity", "format", "ok", "--hash", "md5"],
            "unknown hash algorithm",
        ),
        (
            &["verity", "format", "ok", "--format", "2"],
            "unknown dm-verity format 2",
        ),
        (&["verity", "verify", "ok", "abcd"], "cannot be found"),
    ];
    for (args, expected) in cases {
        let out = run(args, dir.path());
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{args:?}: {:?}",
            out.status
        );
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(entries(dir.path()), before);
    assert_eq!(fs::read(dir.path().join("ok")).unwrap(), vec![1u8; 8192]);
}

/// A write that fails half-way (file size limit, EFBIG) rolls the data file back to its
/// original length and content, and writes no sidecar.
#[test]
fn failed_append_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..4096 * 300).map(|i| (i % 251) as u8).collect();
    fs::write(dir.path().join("d"), &data).unwrap();
    // Ignore SIGXFSZ so the write fails with EFBIG; allow the superblock but not the tree.
    let limit_kib = (4096 * 300 + 4096 + 2048) / 1024;
    let script = format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" verity format d");
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_layerpass"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));
    assert_eq!(fs::read(dir.path().join("d")).unwrap(), data);
    assert_eq!(entries(dir.path()), ["d"]);
}

/// Memory does not grow with the input: a 4 GiB (sparse) file is formatted in well under
/// 64 MiB of peak RSS.
#[test]
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, to read its rusage"
)]
fn four_gib_input_needs_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let f = fs::File::create(dir.path().join("big")).unwrap();
    f.set_len(4 << 30).unwrap();
    drop(f);
    let mut child = layerpass()
        .args(["verity", "format", "big", "--hash-file", "big.h", "--json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; status and usage are valid for writes.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["data_blocks"], 1 << 20);
    let max_rss_kib = usage.ru_maxrss;
    eprintln!("peak RSS for 4 GiB: {max_rss_kib} KiB");
    assert!(
        max_rss_kib < 64 * 1024,
        "peak RSS {max_rss_kib} KiB for a 4 GiB input"
    );
}

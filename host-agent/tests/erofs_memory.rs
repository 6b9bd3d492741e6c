//! Bounded memory: a 1 GiB layer of 100,000 files converts (with verity) in under
//! 512 MiB peak RSS. The `layerpass` binary reads the generated tar from stdin; its peak
//! RSS comes from `getrusage(RUSAGE_CHILDREN)` once it has exited. (Its own test binary,
//! so no other child of this process can set the maximum.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::streamgen::{GenTar, Member};
use common::tools;

const FILES: u64 = 100_000;
const TOTAL: u64 = 1 << 30;
const LIMIT_KIB: i64 = 512 * 1024;

#[test]
fn one_gib_layer_of_100k_files_converts_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.erofs");
    // sizes 0 .. 2*avg, deterministic, summing to about TOTAL
    let avg = TOTAL / FILES;
    let members: Vec<Member> = (0..FILES)
        .map(|i| Member {
            name: format!("d{:03}/sub{}/file-{i:06}", i % 300, i % 7),
            len: (i * 7919) % (2 * avg),
            seed: i,
            pax_size: false,
        })
        .collect();
    let total: u64 = members.iter().map(|m| m.len).sum();
    let mut child = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["convert", "layer", "-"])
        .arg(&out)
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut gen_tar = GenTar::new(members);
    std::io::copy(&mut gen_tar, &mut stdin).unwrap();
    stdin.flush().unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "convert failed");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["erofs_size"].as_u64().unwrap() >= total);
    assert!(report["root_hash"].is_string());

    // SAFETY: `usage` is a valid, writable rusage for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN with a valid pointer; the call only writes `usage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    let peak_kib = usage.ru_maxrss;
    eprintln!(
        "{FILES} files, {} MiB: peak RSS {} MiB",
        total >> 20,
        peak_kib >> 10
    );
    assert!(
        peak_kib < LIMIT_KIB,
        "peak RSS {peak_kib} KiB is over {LIMIT_KIB} KiB"
    );
    tools::fsck(&out);
}

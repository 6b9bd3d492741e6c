//! The host's fuzz corpora, replayed by `cargo test` through the same harnesses the fuzz
//! targets call: `virtio_blk_queue` (`layerpass::vhost::fuzz_harness`), `tar_convert`
//! (`layerpass::erofs::fuzz_harness`) and `verity_metadata`
//! (`layerpass::verity::fuzz_harness`). Every committed input must pass its oracle, each
//! corpus must still reach the code behind the parsers, the seeds must be committed as the
//! harnesses make them and do what they were made for, and any crash file a local fuzz run
//! left in `fuzz/artifacts/` is replayed too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

use std::path::PathBuf;
use std::time::Instant;

use layerpass::erofs::fuzz_harness::{self as tar_harness, TarHarness};
use layerpass::verity::fuzz_harness as verity_harness;
use layerpass_test_support::fuzz_corpus::{
    check_seeds, corpus_files, replay as replay_with, replay_artifacts,
};

use layerpass::vhost::fuzz_harness::{
    BLOB_BYTE, MEM_START, Outcome, QueueHarness, SEED_DATA, SEED_STATUS, SERIAL, seeds,
};
use vm_memory::{Bytes, GuestAddress};

/// Files committed in `fuzz/corpus/virtio_blk_queue/`: the replay must see at least as many
/// (raise it when adding files; a lower count means the corpus went missing).
const COMMITTED: usize = 245;

/// Replays every file through the queue harness (the shared replay names every file that
/// panicked or broke the oracle) and adds up what the passes did.
fn replay(files: &[PathBuf]) -> Outcome {
    let harness = QueueHarness::new().expect("fuzz harness set-up");
    let mut total = Outcome::default();
    for o in replay_with(files, |input| harness.run(input)) {
        total.passes += o.passes;
        total.completed += o.completed;
        total.queue_error |= o.queue_error;
        total.disk_reads += o.disk_reads;
        total.bytes_read += o.bytes_read;
    }
    total
}

#[test]
fn fuzz_corpus_virtio_blk_queue() {
    let files = corpus_files("virtio_blk_queue", COMMITTED);
    let start = Instant::now();
    let total = replay(&files);
    eprintln!(
        "{} corpus inputs replayed in {:.2?}: {total:?}",
        files.len(),
        start.elapsed()
    );
    // The corpus reaches the data path, not only the framing checks.
    assert!(
        total.completed >= files.len() / 2 && total.disk_reads > 0,
        "the corpus completes too little: {total:?}"
    );
}

#[test]
fn fuzz_seeds_virtio_blk_queue() {
    check_seeds("virtio_blk_queue", &seeds());

    // Each seed does what it was made for.
    let harness = QueueHarness::new().unwrap();
    let status = |name: &str| {
        let (_, input) = seeds().into_iter().find(|(n, _)| *n == name).unwrap();
        let (o, mem) = harness.run_in(&input).unwrap();
        assert_eq!(
            (o.passes, o.completed, o.queue_error),
            (2, 1, false),
            "{name}: {o:?}"
        );
        let status: u8 = mem.read_obj(GuestAddress(MEM_START + SEED_STATUS)).unwrap();
        let mut data = [0u8; 512];
        mem.read_slice(&mut data, GuestAddress(MEM_START + SEED_DATA))
            .unwrap();
        (o, status, data)
    };
    for name in ["seed-read", "seed-read-indirect"] {
        let (o, s, data) = status(name);
        assert_eq!(
            (o.disk_reads, o.bytes_read, s),
            (1, 512, 0),
            "{name}: {o:?}"
        );
        assert!(data.iter().all(|&b| b == BLOB_BYTE), "{name}: data");
    }
    let (o, s, _) = status("seed-write");
    assert_eq!(
        (o.disk_reads, s),
        (0, 1),
        "write on a read-only disk: IOERR"
    );
    let (_, s, data) = status("seed-getid");
    assert_eq!((s, &data[..SERIAL.len()]), (0, SERIAL.as_bytes()));
    let (_, s, _) = status("seed-flush");
    assert_eq!(s, 0);
    let (_, s, _) = status("seed-discard");
    assert_eq!(s, 2, "discard on a layer disk: UNSUPP");
}

/// Crash, leak, timeout and OOM files of a local `cargo fuzz run` (never committed): each
/// must pass once the bug is fixed; then add it to the corpus as a regression file.
#[test]
fn fuzz_artifacts_virtio_blk_queue() {
    let harness = QueueHarness::new().expect("fuzz harness set-up");
    replay_artifacts("virtio_blk_queue", |input| harness.run(input));
}

/// Files committed in `fuzz/corpus/tar_convert/` (raise it when adding files).
const COMMITTED_TAR: usize = 191;

/// Files committed in `fuzz/corpus/verity_metadata/` (raise it when adding files).
const COMMITTED_VERITY: usize = 456;

#[test]
fn fuzz_corpus_tar_convert() {
    let harness = TarHarness::new().unwrap();
    let files = corpus_files("tar_convert", COMMITTED_TAR);
    let outcomes = replay_with(&files, |input| harness.run(input));
    let converted = outcomes
        .iter()
        .filter(|o| matches!(o, tar_harness::Outcome::Converted(_)))
        .count();
    eprintln!("tar_convert: {} inputs, {converted} converted", files.len());
    // The corpus reaches the converter's output, not only the parser's errors.
    assert!(converted > 0, "no tar_convert input converts");
}

#[test]
fn fuzz_seeds_tar_convert() {
    let seeds = tar_harness::seeds();
    check_seeds("tar_convert", &seeds);
    let harness = TarHarness::new().unwrap();
    for (name, input) in &seeds {
        let outcome = harness.run(input).unwrap();
        assert!(
            matches!(outcome, tar_harness::Outcome::Converted(_)),
            "{name}: {outcome:?}"
        );
    }
}

#[test]
fn fuzz_artifacts_tar_convert() {
    let harness = TarHarness::new().unwrap();
    replay_artifacts("tar_convert", |input| harness.run(input));
}

#[test]
fn fuzz_corpus_verity_metadata() {
    let files = corpus_files("verity_metadata", COMMITTED_VERITY);
    let outcomes = replay_with(&files, verity_harness::run);
    let count = |f: fn(&verity_harness::Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let (superblocks, sidecars, mappings) = (
        count(|o| o.superblock),
        count(|o| o.sidecar),
        count(|o| o.mapping),
    );
    eprintln!(
        "verity_metadata: {} inputs: {superblocks} superblocks, {sidecars} sidecars, \
         {mappings} mappings accepted",
        files.len()
    );
    assert!(
        superblocks > 0 && sidecars > 0 && mappings > 0,
        "the verity_metadata corpus does not reach every parser and the mapping"
    );
}

#[test]
fn fuzz_seeds_verity_metadata() {
    let seeds = verity_harness::seeds();
    check_seeds("verity_metadata", &seeds);
    for (name, input) in &seeds {
        let o = verity_harness::run(input).unwrap();
        assert!(o.sidecar && o.mapping, "{name}: {o:?}");
    }
}

#[test]
fn fuzz_artifacts_verity_metadata() {
    replay_artifacts("verity_metadata", verity_harness::run);
}

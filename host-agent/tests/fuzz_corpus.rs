//! The host's fuzz corpora, replayed by `cargo test` through the same harnesses the fuzz
//! targets call: `virtio_blk_queue` (`layerpass::vhost::fuzz_harness`), `tar_convert`
//! (`layerpass::erofs::fuzz_harness`), `verity_metadata`
//! (`layerpass::verity::fuzz_harness`) and `containerd_mounts`
//! (`layerpass::containerd::fuzz_harness`). Every committed input must pass its oracle, each
//! corpus must still reach the code behind the parsers, the seeds must be committed as the
//! harnesses make them and do what they were made for, and any crash file a local fuzz run
//! left in `fuzz/artifacts/` is replayed too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

use std::path::PathBuf;
use std::time::Instant;

use layerpass::containerd::fuzz_harness as containerd_harness;
use layerpass::erofs::fuzz_harness::{self as tar_harness, TarHarness};
use layerpass::verity::fuzz_harness as verity_harness;
use layerpass_test_support::fuzz_corpus::{
    check_seeds, corpus_files, replay as replay_with, replay_artifacts,
};

use layerpass::vhost::fuzz_harness::disks::{BLOB2_BYTE, TREE_BYTE};
use layerpass::vhost::fuzz_harness::engine::seeds as engine_seeds;
use layerpass::vhost::fuzz_harness::engine::{Checks, EngineHarness, EngineOutcome};
use layerpass::vhost::fuzz_harness::seeds::{
    BASIC, SEED_DATA, SEED_READ_BACK, SEED_STATUS, pattern, read,
};
use layerpass::vhost::fuzz_harness::{
    BLOB_BYTE, BLOB_LEN, CONFIG_LEN, Config, DiskKind, MEM_START, Outcome, QueueHarness, SERIAL,
    seeds,
};
use vm_memory::{Bytes, GuestAddress};

/// Files committed in `fuzz/corpus/virtio_blk_queue/`: the replay must see at least as many
/// (raise it when adding files; a lower count means the corpus went missing).
const COMMITTED: usize = 313;

/// Replays every file through the queue harness (the shared replay names every file that
/// panicked or broke the oracle) and adds up what the passes did.
fn replay(files: &[PathBuf]) -> Outcome {
    let harness = QueueHarness::new().expect("fuzz harness set-up");
    let mut total = Outcome::default();
    for o in replay_with(files, |input| harness.run(input)) {
        total.add(&o);
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
    // The corpus reaches the data path of every kind of request, not only the framing
    // checks, and the model comparison sees reads.
    assert!(
        total.completed >= files.len() / 2
            && total.disk_reads > 0
            && total.reads_checked > 0
            && total.disk_writes > 0
            && total.ranges > 0,
        "the corpus completes too little: {total:?}"
    );
    // Every kind of disk, queue size and memory layout is in the corpus.
    let configs: Vec<Config> = files
        .iter()
        .map(|f| Config::of(&std::fs::read(f).unwrap()))
        .collect();
    for c in [
        |c: &Config| c.disk == DiskKind::Scratch,
        |c: &Config| c.disk == DiskKind::Composite,
        |c: &Config| c.disk == DiskKind::LayerWithTree,
        |c: &Config| c.regions > 1 && !c.holes,
        |c: &Config| c.holes,
        |c: &Config| c.queue_size == 256,
        |c: &Config| c.event_idx,
    ] {
        assert!(
            configs.iter().any(c),
            "a configuration is missing from the corpus"
        );
    }
}

/// Runs the named seed; returns its outcome, the status bytes of its requests (`n` of them,
/// from [`SEED_STATUS`]) and guest memory.
fn run_seed(
    harness: &QueueHarness,
    name: &str,
    n: usize,
) -> (Outcome, Vec<u8>, layerpass::vhost::request::GuestMem) {
    let (_, input) = seeds().into_iter().find(|(s, _)| *s == name).unwrap();
    let (o, mem) = harness.run_in(&input).unwrap();
    let mut status = vec![0xffu8; n];
    mem.read_slice(&mut status, at(&input, SEED_STATUS))
        .unwrap();
    (o, status, mem)
}

/// The guest address of image offset `offset` for `input`'s configuration.
fn at(input: &[u8], offset: usize) -> GuestAddress {
    Config::of(input).address_of(offset).unwrap()
}

fn read_mem(mem: &layerpass::vhost::request::GuestMem, addr: GuestAddress, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    mem.read_slice(&mut out, addr).unwrap();
    out
}

#[test]
fn fuzz_seeds_virtio_blk_queue() {
    check_seeds("virtio_blk_queue", &seeds());
    for (name, input) in seeds() {
        assert!(input.len() > CONFIG_LEN, "{name}");
    }

    // Each seed does what it was made for.
    let harness = QueueHarness::new().unwrap();
    let data = |mem: &_, len| read_mem(mem, GuestAddress(MEM_START + SEED_DATA as u64), len);
    for name in ["seed-read", "seed-read-indirect"] {
        let (o, s, mem) = run_seed(&harness, name, 1);
        assert_eq!(
            (
                o.passes,
                o.completed,
                o.disk_reads,
                o.bytes_read,
                o.reads_checked,
                &s[..]
            ),
            (2, 1, 1, 512, 1, &[0][..]),
            "{name}: {o:?}"
        );
        assert!(
            data(&mem, 512).iter().all(|&b| b == BLOB_BYTE),
            "{name}: data"
        );
    }
    let (o, s, _) = run_seed(&harness, "seed-write", 1);
    assert_eq!(
        (o.disk_reads, o.disk_writes, &s[..]),
        (0, 0, &[1][..]),
        "write on a read-only disk: IOERR"
    );
    let (_, s, mem) = run_seed(&harness, "seed-getid", 1);
    assert_eq!(
        (&s[..], &data(&mem, SERIAL.len())[..]),
        (&[0][..], SERIAL.as_bytes())
    );
    let (_, s, _) = run_seed(&harness, "seed-flush", 1);
    assert_eq!(s, [0]);
    let (_, s, _) = run_seed(&harness, "seed-discard", 1);
    assert_eq!(s, [2], "discard on a layer disk: UNSUPP");

    // The layer disk's end: blob bytes then zero padding; one sector further, IOERR.
    let (o, s, mem) = run_seed(&harness, "seed-read-padding", 1);
    assert_eq!((o.reads_checked, &s[..]), (1, &[0][..]), "{o:?}");
    let got = data(&mem, 1024);
    let blob_end = BLOB_LEN - 19 * 512;
    assert!(got[..blob_end].iter().all(|&b| b == BLOB_BYTE));
    assert!(got[blob_end..].iter().all(|&b| b == 0));
    let (o, s, _) = run_seed(&harness, "seed-read-past-end", 1);
    assert_eq!((o.disk_reads, &s[..]), (0, &[1][..]), "{o:?}");

    // Scratch: written bytes read back; a discarded or zeroed sector reads as zeros.
    let back = |mem: &_| read_mem(mem, GuestAddress(MEM_START + SEED_READ_BACK as u64), 1024);
    let (o, s, mem) = run_seed(&harness, "seed-scratch-write-read", 2);
    assert_eq!(
        (
            o.completed,
            o.disk_writes,
            o.bytes_written,
            o.reads_checked,
            &s[..]
        ),
        (2, 1, 1024, 1, &[0, 0][..]),
        "{o:?}"
    );
    assert_eq!(back(&mem), pattern(1024));
    for name in ["seed-scratch-write-zeroes", "seed-scratch-discard"] {
        let (o, s, mem) = run_seed(&harness, name, 3);
        assert_eq!(
            (
                o.completed,
                o.disk_writes,
                o.ranges,
                o.reads_checked,
                &s[..]
            ),
            (3, 1, 1, 1, &[0, 0, 0][..]),
            "{name}: {o:?}"
        );
        let mut want = pattern(512);
        want.resize(1024, 0);
        assert_eq!(back(&mem), want, "{name}");
    }
    // Each run starts from an empty scratch disk: after the write above, a run that only
    // reads sees zeros (the model says zeros: a disk not emptied would break the oracle).
    let scratch = Config {
        disk: DiskKind::Scratch,
        ..BASIC
    };
    let (o, mem) = harness.run_in(&read(scratch, 1, 1024)).unwrap();
    assert_eq!(o.reads_checked, 1, "{o:?}");
    assert!(data(&mem, 1024).iter().all(|&b| b == 0));

    // Composite: partition 2 holds the second layer's blob (padded) then its tree.
    let (o, s, mem) = run_seed(&harness, "seed-composite-read", 1);
    assert_eq!((o.reads_checked, &s[..]), (1, &[0][..]), "{o:?}");
    let got = data(&mem, 0x3000);
    assert!(got[..5000].iter().all(|&b| b == BLOB2_BYTE));
    assert!(got[5000..0x2000].iter().all(|&b| b == 0));
    assert!(got[0x2000..0x2000 + 3000].iter().all(|&b| b == TREE_BYTE));
    let (o, s, _) = run_seed(&harness, "seed-layer-tree-read", 1);
    assert_eq!(
        (o.bytes_read, o.reads_checked, &s[..]),
        (0x3000, 1, &[0][..]),
        "{o:?}"
    );

    // A buffer across region boundaries is written and read in pieces.
    let (o, s, mem) = run_seed(&harness, "seed-split-regions", 2);
    assert_eq!(
        (o.disk_writes, o.reads_checked, &s[..]),
        (1, 1, &[0, 0][..]),
        "{o:?}"
    );
    let (_, input) = seeds()
        .into_iter()
        .find(|(n, _)| *n == "seed-split-regions")
        .unwrap();
    let quarter = layerpass::vhost::fuzz_harness::layout::MEM_LEN / 4;
    let mut back = read_mem(&mem, at(&input, 2 * quarter - 512), 512);
    back.extend(read_mem(&mem, at(&input, 2 * quarter), 512));
    assert_eq!(back, pattern(1024));

    // A buffer running into a hole between regions: IOERR, nothing read.
    let (o, s, _) = run_seed(&harness, "seed-read-into-hole", 1);
    assert_eq!(
        (o.completed, o.disk_reads, &s[..]),
        (1, 0, &[1][..]),
        "{o:?}"
    );

    // The largest queue, event index on.
    let (_, input) = seeds()
        .into_iter()
        .find(|(n, _)| *n == "seed-queue-256")
        .unwrap();
    let (o, mem) = harness.run_in(&input).unwrap();
    assert_eq!((o.completed, o.reads_checked), (1, 1), "{o:?}");
    let status: u8 = mem.read_obj(at(&input, 0x2100)).unwrap();
    assert_eq!(status, 0);
}

/// Crash, leak, timeout and OOM files of a local `cargo fuzz run` (never committed): each
/// must pass once the bug is fixed; then add it to the corpus as a regression file.
#[test]
fn fuzz_artifacts_virtio_blk_queue() {
    let harness = QueueHarness::new().expect("fuzz harness set-up");
    replay_artifacts("virtio_blk_queue", |input| harness.run(input));
}

/// Files committed in `fuzz/corpus/tar_convert/` (raise it when adding files).
const COMMITTED_TAR: usize = 492;

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

/// Files committed in `fuzz/corpus/containerd_mounts/` (raise it when adding files).
const COMMITTED_CONTAINERD: usize = 790;

#[test]
fn fuzz_corpus_containerd_mounts() {
    let files = corpus_files("containerd_mounts", COMMITTED_CONTAINERD);
    let outcomes = replay_with(&files, containerd_harness::run);
    let count =
        |f: fn(&containerd_harness::Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let (entries, accepted, several) = (
        count(|o| o.entries),
        count(|o| o.accepted),
        count(|o| o.layers > 1),
    );
    eprintln!(
        "containerd_mounts: {} inputs: {entries} read as mount lists, {accepted} accepted, \
         {several} with several layers",
        files.len()
    );
    // The corpus reaches the parser behind the JSON, and lists it accepts, not only errors.
    assert!(
        entries > files.len() / 8 && accepted > 0 && several > 0,
        "the containerd_mounts corpus does not reach the parser's accepted lists"
    );
}

#[test]
fn fuzz_seeds_containerd_mounts() {
    let seeds = containerd_harness::seeds();
    check_seeds("containerd_mounts", &seeds);
    for (name, input) in &seeds {
        let o = containerd_harness::run(input).unwrap();
        assert!(o.accepted && o.layers > 0, "{name}: {o:?}");
    }
}

#[test]
fn fuzz_artifacts_containerd_mounts() {
    replay_artifacts("containerd_mounts", containerd_harness::run);
}

/// Files committed in `fuzz/corpus/vhost_engine/` (raise it when adding files).
const COMMITTED_ENGINE: usize = 298;

fn engine_harness() -> EngineHarness {
    EngineHarness::new(Checks::Engine).expect("engine harness set-up")
}

#[test]
fn fuzz_corpus_vhost_engine() {
    let files = corpus_files("vhost_engine", COMMITTED_ENGINE);
    let harness = engine_harness();
    let start = Instant::now();
    let outcomes = replay_with(&files, |input| harness.run(input));
    let mut total = EngineOutcome::default();
    for o in &outcomes {
        total.add(o);
    }
    eprintln!(
        "vhost_engine: {} inputs replayed in {:.2?}: {total:?}",
        files.len(),
        start.elapsed()
    );
    // The corpus reaches every kind of step the engine must handle, not only refusals:
    // requests completed and written, memory tables taken, queues stopped, garbage,
    // connections the backend ended.
    assert!(
        total.completed > files.len()
            && total.disk_writes > 0
            && total.tables > 0
            && total.vring_bases > 0
            && total.garbage > 0
            && total.dropped > 0
            && total.connections > files.len(),
        "the vhost_engine corpus does not reach the engine: {total:?}"
    );
}

#[test]
fn fuzz_seeds_vhost_engine() {
    let seeds = engine_seeds::seeds();
    check_seeds("vhost_engine", &seeds);
    let harness = engine_harness();
    let run = |name: &str| {
        let (_, input) = seeds.iter().find(|(s, _)| *s == name).unwrap();
        let start = Instant::now();
        let o = harness.run(input).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {o:?} in {:.2?}", start.elapsed());
        o
    };
    // The fresh frontends of the health check read once per queue: 7 reads.
    const HEALTH_READS: u64 = 7;
    for name in [
        "seed-read-layer",
        "seed-read-layer-tree",
        "seed-read-composite",
    ] {
        let o = run(name);
        assert!(
            o.submitted >= 4 && o.completed == o.submitted && o.disk_reads > HEALTH_READS + 1,
            "{name}: {o:?}"
        );
    }
    let o = run("seed-scratch-write-read");
    assert!(
        o.completed == o.submitted && o.disk_writes == 2,
        "written and read back: {o:?}"
    );
    // The reconnect leaves requests to the old connection; the new one is served.
    let o = run("seed-reconnect-mid-io");
    assert_eq!(
        (o.connections, o.submitted, o.completed, o.vring_bases),
        (2, 8, 4, 1),
        "{o:?}"
    );
    // SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG, ADD_MEM_REG; every request completed (the one
    // whose buffer went with its region too).
    let o = run("seed-mem-add-remove");
    assert_eq!(
        (o.tables, o.submitted, o.completed, o.disk_writes),
        (4, 4, 4, 1),
        "{o:?}"
    );
    // Garbage on a live connection and on a fresh one; both disks served afterwards.
    let o = run("seed-garbage");
    assert_eq!((o.garbage, o.connections, o.completed), (2, 4, 2), "{o:?}");
    let o = run("seed-stop-restart");
    assert_eq!((o.vring_bases, o.completed), (1, 3), "{o:?}");
}

#[test]
fn fuzz_artifacts_vhost_engine() {
    let harness = engine_harness();
    replay_artifacts("vhost_engine", |input| harness.run(input));
}

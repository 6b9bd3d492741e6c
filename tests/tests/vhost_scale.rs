//! The engine at scale, counted rather than timed: its threads do not grow with the number of
//! disks (1, 50, 550), 50 clients at once each read their own disk correctly, an idle engine
//! burns no CPU once its clients stop, and a storm of connects and disconnects leaves no
//! thread, file descriptor or mapping behind.
//!
//! One test function, so no other test of this binary runs threads or opens files meanwhile.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use layerpass::export::layer::LayerDisk;
use layerpass::vhost::{Engine, EngineConfig, Export};
use layerpass_tests::blk_client::BlkClient;
use sha2::{Digest, Sha256};

const WORKERS: usize = 2;
/// Bytes of each client's disk.
const DISK_LEN: usize = 256 << 10;

/// This process's threads whose name starts with `vhost-` (the engine's), with the CPU
/// ticks (utime + stime) each has used.
fn engine_threads() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in fs::read_dir("/proc/self/task").unwrap() {
        let t = t.unwrap().path();
        let Ok(comm) = fs::read_to_string(t.join("comm")) else {
            continue;
        };
        let comm = comm.trim().to_owned();
        if !comm.starts_with("vhost-") {
            continue;
        }
        let stat = fs::read_to_string(t.join("stat")).unwrap();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        out.push((comm, ticks));
    }
    out.sort();
    out
}

fn count(dir: &str) -> usize {
    fs::read_dir(dir).unwrap().count()
}

fn mappings() -> usize {
    fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Serves `n` disks, disk `i` being `blobs[i % blobs.len()]`.
fn serve_many(engine: &Engine, dir: &Path, blobs: &[PathBuf], n: usize) -> Vec<Export> {
    (0..n)
        .map(|i| {
            let disk = LayerDisk::open(&blobs[i % blobs.len()], None, Some("scale")).unwrap();
            engine
                .serve(&dir.join(format!("d{i}.sock")), Arc::new(disk), 2)
                .unwrap()
        })
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_engine_scales_without_threads_or_leaks() {
    // The engine's warnings (why a request failed) appear with a failure's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<PathBuf> = (0..50u32)
        .map(|i| {
            let p = dir.path().join(format!("blob{i}"));
            fs::write(&p, pattern(DISK_LEN, i)).unwrap();
            p
        })
        .collect();
    let sums: Vec<[u8; 32]> = (0..50u32)
        .map(|i| Sha256::digest(pattern(DISK_LEN, i)).into())
        .collect();

    assert!(engine_threads().is_empty(), "no engine before the test");
    let engine = Engine::start(EngineConfig {
        workers: WORKERS,
        ..EngineConfig::default()
    })
    .unwrap();
    assert_eq!(engine.threads(), 1 + WORKERS);
    let names = |t: &[(String, u64)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    // A thread names itself once it runs.
    let expected = ["vhost-control", "vhost-q0", "vhost-q1"];
    wait_until("the engine's threads named", || {
        names(&engine_threads()) == expected
    });
    let started = names(&engine_threads());

    // 1, 50 and 550 disks: the same threads.
    for n in [1, 50, 550] {
        let sockets = tempfile::tempdir().unwrap();
        let exports = serve_many(&engine, sockets.path(), &blobs, n);
        assert_eq!(names(&engine_threads()), started, "{n} disks");
        drop(exports);
        assert_eq!(
            count(&sockets.path().to_string_lossy()),
            0,
            "sockets removed"
        );
    }

    // 50 clients at once, each reading its own disk whole.
    let sockets = tempfile::tempdir().unwrap();
    let exports = serve_many(&engine, sockets.path(), &blobs, 50);
    let barrier = Arc::new(std::sync::Barrier::new(51));
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let socket = exports[i].socket().to_owned();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = BlkClient::connect(&socket, true, 64 << 10).unwrap();
                assert_eq!(c.capacity(), DISK_LEN as u64);
                barrier.wait();
                let mut h = Sha256::new();
                for at in (0..DISK_LEN as u64).step_by(64 << 10) {
                    h.update(c.read(at, 64 << 10).unwrap());
                }
                let sum: [u8; 32] = h.finalize().into();
                // Keep the connection open until every client has read.
                barrier.wait();
                (sum, c)
            })
        })
        .collect();
    barrier.wait();
    // Every client connected: 50 connections, 50 running queues, still the same threads.
    assert_eq!(names(&engine_threads()), started, "50 connected clients");
    barrier.wait();
    let mut open = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let (sum, client) = c.join().unwrap();
        assert_eq!(sum, sums[i], "disk {i} read back wrong");
        open.push(client);
    }
    assert_eq!(engine.running_queues(), 50, "one queue per client");

    // Idle with 50 clients connected: once the poll interval has passed, the engine's
    // threads sleep. A thread that kept polling would use every tick of the interval.
    std::thread::sleep(Duration::from_millis(50));
    let before = engine_threads();
    std::thread::sleep(Duration::from_millis(500));
    let after = engine_threads();
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(
            b - a <= 2,
            "{name} used {} CPU ticks in 500 ms while idle",
            b - a
        );
    }

    drop(open);
    wait_until("every client disconnected", || engine.running_queues() == 0);
    drop(exports);

    // A storm of connects and disconnects: nothing grows.
    let sockets = tempfile::tempdir().unwrap();
    let exports = serve_many(&engine, sockets.path(), &blobs, 10);
    let storm = |rounds: usize| {
        for r in 0..rounds {
            let e = &exports[r % exports.len()];
            let mut c = BlkClient::connect(e.socket(), true, 4096).unwrap();
            assert_eq!(
                c.read(4096, 4096).unwrap(),
                pattern(DISK_LEN, (r % 10) as u32)[4096..8192]
            );
            drop(c);
        }
        wait_until("the storm's connections ended", || {
            engine.running_queues() == 0
                && exports.iter().all(|e| {
                    !e.stats()
                        .connected
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
        });
    };
    // Warm up (allocator arenas, libblkio's first use), then count once settled.
    storm(20);
    std::thread::sleep(Duration::from_millis(100));
    let (fds, maps, threads) = (count("/proc/self/fd"), mappings(), names(&engine_threads()));
    storm(200);
    // A worker drops a stopped queue (and the eventfds it holds) on its next pass, so the
    // counts settle a moment after the connections end; a leak never does.
    wait_until(
        "file descriptors back to their count before 200 reconnects",
        || count("/proc/self/fd") <= fds,
    );
    wait_until(
        "memory mappings back to their count before 200 reconnects",
        || mappings() <= maps,
    );
    assert_eq!(
        names(&engine_threads()),
        threads,
        "threads after 200 reconnects"
    );
    let connections: u64 = exports
        .iter()
        .map(|e| {
            e.stats()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert_eq!(connections, 220);
    drop(exports);
    drop(engine);
    assert!(
        engine_threads().is_empty(),
        "the engine's threads are joined"
    );
}

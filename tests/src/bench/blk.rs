//! `layerpass-bench blk`: layerpass against qemu-storage-daemon (qsd) over vhost-user-blk,
//! both driven by the same libblkio client (`blkio` 0.5.1, driver `virtio-blk-vhost-user`,
//! one thread in the bench process, a fresh connection per run).
//!
//! Both servers run as their own processes, each in its best configuration for this
//! load: `layerpass blk serve --queues 1` (the binary built beside the bench, its busy-poll
//! at the server's default unless `--poll-us`), and `qemu-storage-daemon` with an iothread
//! for the export, `aio=io_uring`, `cache.direct=off`, read-only, one queue. They serve the
//! same page-cache-hot file (`--size-mib`, default 1 GiB). Socket files left by an earlier
//! run are removed before a server starts, a server counts as started once `/proc/net/unix`
//! shows all its sockets listening, and it must still be alive before every run. The
//! servers die with the bench (`PR_SET_PDEATHSIG`), and `--dir` is locked for the run.
//!
//! Workloads: 4 KiB random reads at QD1 and QD32, 1 MiB sequential reads at QD4, each
//! `--rounds` times per server for `--secs` seconds, the order alternating each round
//! (round 0 qsd first, round 1 layerpass first, …). Per run:
//! - IOPS (MiB/s for sequential): reads completed / time;
//! - server CPU per I/O: the server process's utime + stime (all threads, from
//!   `/proc/PID/stat`, 10 ms ticks) over the run / reads completed;
//! - latency p50 and p99: submission to completion of each read, timed in the client.
//!
//! The report gives each figure as the median and the min–max over the rounds, then the
//! layerpass/qsd ratios of the medians for IOPS and CPU per I/O.
//!
//! `--disks N` measures one layerpass process serving N disks instead (see [`disks`]),
//! and `--repeat N` opens N short QD32 connections to each server, counting failed reads
//! instead of stopping at the first (see [`repeat`]).

mod disks;
mod repeat;
mod servers;
mod workload;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};

use super::procfs;
use super::stats::{median_f64, median_range, percentile, ratio};
use super::verity::write_data;
use crate::blk_client::BlkClient;
use crate::tools::find_tool;
use servers::{LayerpassOptions, ServerProc, qsd_version, start_layerpass, start_qsd};
use workload::{WORKLOADS, Workload, timed_reads};

/// Options of `layerpass-bench blk`.
#[derive(Debug, Clone, clap::Args)]
pub struct BlkArgs {
    /// File size in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Rounds per workload (the order of the servers alternates).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per run (long against the 10 ms CPU tick: 2 s gives 0.5 %).
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// layerpass `--poll-us` (busy-poll after a batch); default: the server's own default.
    #[arg(long)]
    pub poll_us: Option<u64>,
    /// Instead of the comparison: one layerpass process serving this many disks (one socket
    /// each, the same file): threads, memory, idle CPU, aggregate IOPS.
    #[arg(long, value_name = "N")]
    pub disks: Option<usize>,
    /// With --disks: numbers of disks read at once (capped at N).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,50",
        requires = "disks"
    )]
    pub active: Vec<usize>,
    /// With --disks: seconds each idle measurement lasts.
    #[arg(long, default_value_t = 30, requires = "disks")]
    pub idle_secs: u64,
    /// With --disks: queue depth of each active disk's client (4 KiB random reads).
    #[arg(long, default_value_t = 32, requires = "disks")]
    pub depth: usize,
    /// With --disks: layerpass `--workers` (default: the server's own default).
    #[arg(long, requires = "disks")]
    pub workers: Option<usize>,
    /// Instead of the comparison: N connections per server, each reading 4 KiB at QD32
    /// for --repeat-secs, counting failed reads instead of stopping at the first.
    #[arg(long, value_name = "N", conflicts_with = "disks")]
    pub repeat: Option<usize>,
    /// With --repeat: seconds per connection.
    #[arg(long, default_value_t = 0.2, requires = "repeat")]
    pub repeat_secs: f64,
}

/// The two servers, in report order.
const LAYERPASS: usize = 0;
const QSD: usize = 1;

/// One run of one workload against one server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Reads (or MiB for bandwidth workloads) per second.
    rate: f64,
    /// Server CPU per read, µs.
    cpu_us: f64,
    /// The client thread's CPU per read, µs (the client shares the 2 cores).
    client_us: f64,
    p50_us: f64,
    p99_us: f64,
    /// Server CPU over the run in clock ticks (its resolution).
    cpu_ticks: u64,
}

/// Below this many ticks of server CPU in a run, CPU per I/O is off by more than 1 %.
const FEW_TICKS: u64 = 100;

/// Runs `layerpass-bench blk` in `dir`.
pub fn run_bench(dir: &Path, args: &BlkArgs) -> anyhow::Result<()> {
    ensure!(args.size_mib > 0, "--size-mib must be at least 1");
    ensure!(args.secs > 0.0, "--secs must be positive");
    // Absolute socket paths: /proc/net/unix shows them as bound.
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let layerpass = super::layerpass_binary()?;
    let _lock = lock_dir(&dir)?;
    let image: PathBuf = dir.join("image");
    // Written beside and renamed into place, never rewritten in place: layerpass fixes a
    // layer's size when it opens it (layers are immutable), so a server still reading the
    // old file (another run in the same --dir, an orphan of a killed one) would fail every
    // read past the new end with EIO. That gave `read failed: -5` from layerpass only
    // (qemu-storage-daemon reads zeros past the end of its file).
    let part = dir.join("image.part");
    write_data(&part, args.size_mib << 20)?;
    std::fs::rename(&part, &image)?;
    // Page cache hot.
    std::io::copy(&mut std::fs::File::open(&image)?, &mut std::io::sink())?;
    if let Some(n) = args.disks {
        return disks::run(&dir, &layerpass, &image, n, args);
    }
    let qsd = find_tool("qemu-storage-daemon")
        .context("qemu-storage-daemon not found (Debian package qemu-system-common)")?;
    if let Some(n) = args.repeat {
        return repeat::run(&dir, &layerpass, &qsd, &image, n, args);
    }
    compare(&dir, &layerpass, &qsd, &image, args)
}

/// An exclusive lock on `dir/blk.lock` for the whole run: two runs in one directory would
/// replace each other's sockets and image under their servers.
fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("blk.lock");
    let f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock on a descriptor `f` owns; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            anyhow::bail!(
                "another layerpass-bench blk is running in {}; use another --dir",
                dir.display()
            );
        }
        return Err(e).with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(f)
}

/// Both servers on the same image, in the order [`LAYERPASS`], [`QSD`].
fn start_pair(
    layerpass: &Path,
    qsd: &Path,
    image: &Path,
    dir: &Path,
    args: &BlkArgs,
) -> anyhow::Result<[ServerProc; 2]> {
    Ok([
        start_layerpass(
            layerpass,
            image,
            &[dir.join("layerpass.sock")],
            layerpass_options(args),
        )?,
        start_qsd(qsd, image, &dir.join("qsd.sock"))?,
    ])
}

fn layerpass_options(args: &BlkArgs) -> LayerpassOptions {
    LayerpassOptions {
        poll: args.poll_us.map(Duration::from_micros),
        workers: args.workers,
    }
}

/// The busy-poll the server runs with: `--poll-us`, or the default its `--help` states.
fn poll_text(layerpass: &Path, args: &BlkArgs) -> String {
    match args.poll_us {
        Some(us) => format!("--poll-us {us}"),
        None => format!(
            "its default --poll-us ({})",
            servers::default_poll_us(layerpass).unwrap_or_else(|| "unknown".to_owned())
        ),
    }
}

fn compare(
    dir: &Path,
    layerpass: &Path,
    qsd: &Path,
    image: &Path,
    args: &BlkArgs,
) -> anyhow::Result<()> {
    let tick = procfs::clock_ticks_per_sec()?;
    let time = Duration::from_secs_f64(args.secs);
    let mut servers = start_pair(layerpass, qsd, image, dir, args)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "blk: {} MiB page-cache-hot file, {} rounds x {} s per workload and server, order alternating (even rounds qemu-storage-daemon first), {cores} cores\n\
         client: libblkio 0.5.1 virtio-blk-vhost-user, one thread in the bench process, a new connection per run\n\
         layerpass, {}: {}\n\
         {}: {}\n\
         CPU/IO: server utime+stime over the run (/proc/PID/stat, {} ms ticks) / reads; client CPU/IO: the same for the bench's client thread; latency: submit to completion in the client; each cell: median (min–max) over the rounds",
        args.size_mib,
        args.rounds,
        args.secs,
        poll_text(layerpass, args),
        servers[LAYERPASS].command(),
        qsd_version(qsd)?,
        servers[QSD].command(),
        1000 / tick,
    )?;
    // Room for about 1 M latencies per run; grows once if a run completes more.
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    for w in WORKLOADS {
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [QSD, LAYERPASS]
            } else {
                [LAYERPASS, QSD]
            };
            for s in order {
                let sample = run_once(&mut servers[s], w, time, tick, &mut latencies)?;
                samples[s].push(sample);
            }
        }
        report(&mut out, w, &samples)?;
    }
    Ok(())
}

/// One connection, one workload for `time`, against `server`'s first socket.
fn run_once(
    server: &mut ServerProc,
    w: Workload,
    time: Duration,
    tick: u64,
    latencies: &mut Vec<u32>,
) -> anyhow::Result<Sample> {
    server.check_alive()?;
    let socket = server.sockets()[0].clone();
    let mut client = BlkClient::connect(&socket, true, w.depth * w.len)?;
    latencies.clear();
    let cpu0 = server.cpu_ticks()?;
    let client0 = procfs::thread_cpu_ticks()?;
    let (reads, elapsed) = timed_reads(
        &mut client,
        w.depth,
        w.len,
        w.random,
        1,
        time,
        Some(latencies),
    )
    .with_context(|| format!("{} against {}", w.name, server.name()))?;
    let cpu1 = server.cpu_ticks()?;
    let client1 = procfs::thread_cpu_ticks()?;
    drop(client);
    ensure!(reads > 0, "no read completed against {}", server.name());
    latencies.sort_unstable();
    let us = |p: f64| f64::from(percentile(latencies, p).unwrap_or(0)) / 1000.0;
    let per_sec = reads as f64 / elapsed.as_secs_f64();
    Ok(Sample {
        rate: if w.is_bandwidth() {
            per_sec * w.len as f64 / f64::from(1 << 20)
        } else {
            per_sec
        },
        cpu_us: procfs::ticks_to_duration(cpu1 - cpu0, tick).as_secs_f64() * 1e6 / reads as f64,
        client_us: procfs::ticks_to_duration(client1 - client0, tick).as_secs_f64() * 1e6
            / reads as f64,
        p50_us: us(50.0),
        p99_us: us(99.0),
        cpu_ticks: cpu1 - cpu0,
    })
}

fn report(out: &mut impl Write, w: Workload, samples: &[Vec<Sample>; 2]) -> anyhow::Result<()> {
    let unit = if w.is_bandwidth() { "MiB/s" } else { "IOPS" };
    writeln!(out, "\n{}", w.name)?;
    writeln!(
        out,
        "  {:<21} {:<26} {:<22} {:<22} {:<22} {:<22}",
        "server", unit, "CPU µs/IO", "client CPU µs/IO", "p50 µs", "p99 µs"
    )?;
    let col = |s: &[Sample], f: fn(&Sample) -> f64, decimals| {
        median_range(&s.iter().map(f).collect::<Vec<_>>(), decimals)
    };
    for (i, name) in [(LAYERPASS, "layerpass"), (QSD, "qemu-storage-daemon")] {
        let s = &samples[i];
        writeln!(
            out,
            "  {name:<21} {:<26} {:<22} {:<22} {:<22} {:<22}",
            col(s, |x| x.rate, 0),
            col(s, |x| x.cpu_us, 2),
            col(s, |x| x.client_us, 2),
            col(s, |x| x.p50_us, 1),
            col(s, |x| x.p99_us, 1),
        )?;
    }
    let med =
        |i: usize, f: fn(&Sample) -> f64| median_f64(&samples[i].iter().map(f).collect::<Vec<_>>());
    writeln!(
        out,
        "  layerpass/qsd: {unit} {:.2}x, CPU per I/O {:.2}x, p50 {:.2}x, p99 {:.2}x",
        ratio(med(LAYERPASS, |x| x.rate), med(QSD, |x| x.rate)),
        ratio(med(LAYERPASS, |x| x.cpu_us), med(QSD, |x| x.cpu_us)),
        ratio(med(LAYERPASS, |x| x.p50_us), med(QSD, |x| x.p50_us)),
        ratio(med(LAYERPASS, |x| x.p99_us), med(QSD, |x| x.p99_us)),
    )?;
    let fewest = samples.iter().flatten().map(|x| x.cpu_ticks).min();
    if let Some(t) = fewest.filter(|&t| t < FEW_TICKS) {
        writeln!(
            out,
            "  note: a run used only {t} ticks of server CPU, so its CPU per I/O is only good to ±1 tick; use a longer --secs"
        )?;
    }
    out.flush()?;
    Ok(())
}

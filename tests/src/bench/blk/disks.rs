//! `layerpass-bench blk --disks N`: one `layerpass blk serve` process serving N disks (one
//! socket each, all the same file), as a host serving many VMs would. Reports:
//!
//! - threads and RSS right after start (all sockets listening, 200 ms later), and the RSS
//!   of a 1-disk server started the same way: memory per disk = (RSS_N − RSS_1) / (N − 1);
//! - idle CPU over `--idle-secs` with no client, then with a libblkio client connected to
//!   every disk but no I/O (threads and RSS with all connected too);
//! - aggregate IOPS and server CPU per I/O with k disks active (each k of `--active`):
//!   k client threads, each on its own connection, 4 KiB random reads at `--depth` for
//!   `--secs`. The client threads run on the same cores as the server; with more active
//!   disks than cores they are CPU-bound, so the totals describe the machine, not the
//!   server alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};

use super::servers::{ServerProc, default_poll_us, start_layerpass};
use super::workload::timed_reads;
use super::{BlkArgs, layerpass_options};
use crate::bench::procfs;
use crate::blk_client::BlkClient;

const LEN: usize = 4096;
/// Time between "all sockets listen" and the thread and RSS reading.
const SETTLE: Duration = Duration::from_millis(200);

/// Threads and RSS of a server at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    threads: usize,
    rss_kib: u64,
}

fn snapshot(server: &mut ServerProc) -> anyhow::Result<Snapshot> {
    server.check_alive()?;
    Ok(Snapshot {
        threads: procfs::thread_count(server.pid())?,
        rss_kib: procfs::rss_kib(server.pid())?,
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(
    dir: &Path,
    layerpass: &Path,
    image: &Path,
    n: usize,
    args: &BlkArgs,
) -> anyhow::Result<()> {
    ensure!(n >= 1, "--disks must be at least 1");
    ensure!(args.depth >= 1, "--depth must be at least 1");
    // Each connection holds a few descriptors on both sides (socket, memfds, eventfds);
    // the server inherits the raised limit.
    let nofile = procfs::raise_nofile_limit()?;
    let tick = procfs::clock_ticks_per_sec()?;
    let opts = layerpass_options(args);
    let time = Duration::from_secs_f64(args.secs);
    let idle = Duration::from_secs(args.idle_secs);
    let sockets: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("d{i}.sock"))).collect();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "disks: one layerpass process serving {n} disk{} (one socket each, the same {} MiB page-cache-hot file, --queues 1, poll {}, workers {}), RLIMIT_NOFILE {nofile} (bench and server), {cores} cores\n\
         clients: libblkio, one thread per active disk in the bench process, sharing the {cores} cores with the server: with more active disks than cores the client threads are CPU-bound and the totals measure the machine, not the server alone",
        plural(n),
        args.size_mib,
        args.poll_us.map_or_else(
            || format!(
                "default ({})",
                default_poll_us(layerpass).unwrap_or_default()
            ),
            |us| format!("{us} µs")
        ),
        args.workers
            .map_or_else(|| "default".to_owned(), |w| w.to_string()),
    )?;

    let one = if n > 1 {
        let mut s = start_layerpass(layerpass, image, &sockets[..1], opts)?;
        std::thread::sleep(SETTLE);
        Some(snapshot(&mut s)?)
    } else {
        None
    };
    let mut server = start_layerpass(layerpass, image, &sockets, opts)?;
    writeln!(out, "server: {}", server.command())?;
    std::thread::sleep(SETTLE);
    let started = snapshot(&mut server)?;
    writeln!(
        out,
        "after start, {n} disk{}: {} threads, RSS {:.1} MiB",
        plural(n),
        started.threads,
        mib(started.rss_kib)
    )?;
    match one {
        Some(one) => writeln!(
            out,
            "after start, 1 disk:  {} threads, RSS {:.1} MiB; per extra disk: {:.1} KiB, {:.2} threads",
            one.threads,
            mib(one.rss_kib),
            (started.rss_kib as f64 - one.rss_kib as f64) / (n - 1) as f64,
            (started.threads as f64 - one.threads as f64) / (n - 1) as f64,
        )?,
        None => writeln!(out, "per-disk memory: needs --disks 2 or more")?,
    }
    out.flush()?;

    let cpu = idle_cpu(&mut server, idle, tick)?;
    writeln!(
        out,
        "idle, no client: {} ms CPU over {} s = {:.3} % of one core",
        cpu.as_millis(),
        idle.as_secs(),
        cpu.as_secs_f64() / idle.as_secs_f64() * 100.0
    )?;
    out.flush()?;

    let mut clients = Vec::with_capacity(n);
    for (i, s) in sockets.iter().enumerate() {
        server.check_alive()?;
        clients.push(
            BlkClient::connect(s, true, args.depth * LEN)
                .with_context(|| format!("connecting to disk {i} of {n}"))?,
        );
    }
    std::thread::sleep(SETTLE);
    let connected = snapshot(&mut server)?;
    let cpu = idle_cpu(&mut server, idle, tick)?;
    writeln!(
        out,
        "idle, {n} client{} connected, no I/O: {} threads, RSS {:.1} MiB; {} ms CPU over {} s = {:.3} % of one core",
        plural(n),
        connected.threads,
        mib(connected.rss_kib),
        cpu.as_millis(),
        idle.as_secs(),
        cpu.as_secs_f64() / idle.as_secs_f64() * 100.0
    )?;
    out.flush()?;

    let mut ks: Vec<usize> = args
        .active
        .iter()
        .map(|&k| k.min(n))
        .filter(|&k| k > 0)
        .collect();
    ks.sort_unstable();
    ks.dedup();
    for k in ks {
        let (reads, elapsed, cpu) = active(&mut server, &mut clients[..k], args.depth, time, tick)?;
        writeln!(
            out,
            "{k} active disk{}, 4 KiB random QD{} each, {:.1} s: {:.0} IOPS total, server CPU {:.2} µs/IO ({:.0} % of one core)",
            plural(k),
            args.depth,
            elapsed.as_secs_f64(),
            reads as f64 / elapsed.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / reads.max(1) as f64,
            cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0
        )?;
        out.flush()?;
    }
    // The connections end before the server does.
    drop(clients);
    Ok(())
}

/// Server CPU time over `time` while the bench sleeps.
fn idle_cpu(server: &mut ServerProc, time: Duration, tick: u64) -> anyhow::Result<Duration> {
    let t0 = server.cpu_ticks()?;
    std::thread::sleep(time);
    let t1 = server.cpu_ticks()?;
    Ok(procfs::ticks_to_duration(t1 - t0, tick))
}

/// One client thread per connection in `clients`, reading for `time`. Returns the reads
/// completed in total, the wall time and the server's CPU time.
fn active(
    server: &mut ServerProc,
    clients: &mut [BlkClient],
    depth: usize,
    time: Duration,
    tick: u64,
) -> anyhow::Result<(u64, Duration, Duration)> {
    let t0 = server.cpu_ticks()?;
    let start = Instant::now();
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, c)| {
                scope.spawn(move || {
                    timed_reads(c, depth, LEN, true, i as u64 + 1, time, None)
                        .map(|(reads, _)| reads)
                        .with_context(|| format!("disk {i}"))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let t1 = server.cpu_ticks()?;
    let mut reads = 0;
    for r in results {
        reads += r?;
    }
    Ok((reads, elapsed, procfs::ticks_to_duration(t1 - t0, tick)))
}

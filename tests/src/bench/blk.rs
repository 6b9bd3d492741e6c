//! `layerpass-bench blk`: a page-cache-hot 1 GiB file served by layerpass and by
//! `qemu-storage-daemon --export type=vhost-user-blk` (aio=io_uring), both driven by the same
//! libblkio client in the same run, alternating: 4 KiB random reads at QD1 and QD32, 1 MiB
//! sequential reads at QD4. Medians of several rounds and the ratios.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use layerpass::export::layer::LayerDisk;

use super::stats::median;
use super::verity::write_data;
use crate::blk_client::BlkClient;
use crate::served::Served;
use crate::tools::find_tool;
use layerpass::vhost::EngineConfig;

/// One workload.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    depth: usize,
    len: usize,
    ops: usize,
    random: bool,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "4 KiB random read, QD1",
        depth: 1,
        len: 4096,
        ops: 20_000,
        random: true,
    },
    Workload {
        name: "4 KiB random read, QD32",
        depth: 32,
        len: 4096,
        ops: 200_000,
        random: true,
    },
    Workload {
        name: "1 MiB sequential read, QD4",
        depth: 4,
        len: 1 << 20,
        ops: 4096,
        random: false,
    },
];

/// qemu-storage-daemon exporting `image` read-only on `socket`; killed on drop.
struct Qsd(Child);

impl Qsd {
    fn start(qsd: &Path, image: &Path, socket: &Path) -> anyhow::Result<Self> {
        let child = Command::new(qsd)
            .arg("--blockdev")
            .arg(format!(
                "driver=file,filename={},node-name=n0,read-only=on,aio=io_uring,cache.direct=off",
                image.display()
            ))
            .arg("--export")
            .arg(format!(
                "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={},writable=off,num-queues=1",
                socket.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start qemu-storage-daemon")?;
        let guard = Self(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("qemu-storage-daemon did not create {}", socket.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(guard)
    }
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_workload(socket: &Path, w: Workload, size: u64) -> anyhow::Result<f64> {
    let mut c = BlkClient::connect(socket, true, w.depth * w.len)?;
    let blocks = size / w.len as u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seq = 0u64;
    let mut left = w.ops;
    let next = || {
        left = left.checked_sub(1)?;
        Some(if w.random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * w.len as u64
        } else {
            let at = (seq % blocks) * w.len as u64;
            seq += 1;
            at
        })
    };
    let t = Instant::now();
    c.read_stream(w.depth, w.len, next, None)?;
    Ok(w.ops as f64 / t.elapsed().as_secs_f64())
}

/// Runs the benchmark in `dir` with a `size`-byte file, `rounds` rounds.
pub fn run_bench(dir: &Path, size: u64, rounds: usize, poll: Duration) -> anyhow::Result<()> {
    let qsd = find_tool("qemu-storage-daemon")
        .context("qemu-storage-daemon not found (Debian package qemu-system-common)")?;
    let image: PathBuf = dir.join("image");
    write_data(&image, size)?;
    let _ = fs::read(&image)?; // page cache hot
    let lp_socket = dir.join("layerpass.sock");
    let qsd_socket = dir.join("qsd.sock");
    let disk = LayerDisk::open(&image, None, Some("bench"))?;
    let _server = Served::with_config(
        &lp_socket,
        Arc::new(disk),
        1,
        EngineConfig {
            poll,
            ..EngineConfig::default()
        },
    )?;
    let _qsd = Qsd::start(&qsd, &image, &qsd_socket)?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "blk: {} MiB page-cache-hot file, 1 queue each, libblkio client, {rounds} rounds, alternating, layerpass busy-poll {} us",
        size >> 20,
        poll.as_micros()
    )?;
    for w in WORKLOADS {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..rounds {
            theirs.push(run_workload(&qsd_socket, w, size)?);
            ours.push(run_workload(&lp_socket, w, size)?);
        }
        let med = |v: &[f64]| {
            let d: Vec<Duration> = v.iter().map(|&x| Duration::from_secs_f64(x)).collect();
            median(&d).as_secs_f64()
        };
        let (m_lp, m_qsd) = (med(&ours), med(&theirs));
        let unit = |iops: f64| {
            if w.len >= 1 << 20 {
                format!("{:.0} MiB/s", iops * w.len as f64 / f64::from(1 << 20))
            } else {
                format!("{iops:.0} IOPS")
            }
        };
        writeln!(
            out,
            "{:<28} layerpass {:>12}   qemu-storage-daemon {:>12}   ratio {:.2}x",
            w.name,
            unit(m_lp),
            unit(m_qsd),
            m_lp / m_qsd
        )?;
    }
    Ok(())
}

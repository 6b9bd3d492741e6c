//! `layerpass-bench verity`: dm-verity tree of a page-cache-hot file, layerpass against
//! `veritysetup format` (cryptsetup), run alternately.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use layerpass::verity::{FormatOptions, HashTarget, Salt, VerityParams, format_file};

use super::stats::{list, median, mib_per_s};
use crate::tools::{find_tool, run, veritysetup_root};

const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

/// Runs the benchmark on a `size`-byte file in `dir`, `runs` times each.
pub fn run_bench(dir: &Path, size: u64, runs: usize) -> anyhow::Result<()> {
    let vs = find_tool("veritysetup")
        .context("veritysetup not found: apt-get install cryptsetup-bin")?;
    ensure!(
        size > 0 && size.is_multiple_of(4096),
        "size must be a positive multiple of 4096"
    );
    let data = dir.join("data");
    write_data(&data, size)?;
    warm(&data)?;
    let zero = "00".repeat(32);

    let mut theirs = Vec::new();
    let mut ours = Vec::new();
    let mut roots = (String::new(), String::new());
    for _ in 0..runs {
        let h = dir.join("vs.hash");
        let _ = fs::remove_file(&h);
        let t = Instant::now();
        let out = run(Command::new(&vs)
            .args(["format", "--salt", &zero, "--uuid", UUID])
            .arg(&data)
            .arg(&h))?;
        theirs.push(t.elapsed());
        roots.0 = veritysetup_root(&out.stdout)?;

        let h = dir.join("lp.hash");
        let _ = fs::remove_file(&h);
        let opts = FormatOptions {
            params: VerityParams {
                salt: Salt::from_str(&zero)?,
                ..VerityParams::containerd()
            },
            uuid: Some(uuid::Uuid::from_str(UUID)?),
            target: HashTarget::File(h.clone()),
            sidecar: false,
            ..FormatOptions::containerd()
        };
        let t = Instant::now();
        let report = format_file(&data, &opts, None)?;
        ours.push(t.elapsed());
        roots.1 = report.root_hash;
        ensure!(
            fs::read(dir.join("vs.hash"))? == fs::read(&h)?,
            "hash files differ between veritysetup and layerpass"
        );
    }
    ensure!(
        roots.0 == roots.1,
        "root hashes differ: {} vs {}",
        roots.0,
        roots.1
    );

    let (m_vs, m_lp) = (median(&theirs), median(&ours));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let report = format!(
        "verity: {} MiB, {runs} runs each, alternating, page cache hot, {cores} cores\n\
         veritysetup format : median {:.3} s ({:.0} MiB/s)  [{}]\n\
         layerpass          : median {:.3} s ({:.0} MiB/s)  [{}]\n\
         ratio (veritysetup / layerpass): {:.2}x\n\
         root hash (both): {}",
        size >> 20,
        m_vs.as_secs_f64(),
        mib_per_s(size, m_vs),
        list(&theirs),
        m_lp.as_secs_f64(),
        mib_per_s(size, m_lp),
        list(&ours),
        ratio(m_vs, m_lp),
        roots.1,
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Writes `size` bytes of incompressible, non-repeating data.
pub fn write_data(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Reads the file once so both tools start from the page cache.
fn warm(path: &Path) -> anyhow::Result<()> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

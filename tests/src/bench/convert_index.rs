//! `layerpass-bench convert --index`: time to a servable, verified layer from the same
//! ~1 GiB real layer tar, page cache hot and cold, alternating in each run:
//!
//! - (i) `layerpass convert layer --index`: metadata + tree + sidecar, the tar left as it
//!   is (a gzip layer is decompressed once into `OUT.tar`);
//! - (f) `layerpass convert layer`: the full EROFS image with verity appended;
//! - (c) containerd's EROFS differ: `mkfs.erofs --tar=f` + `veritysetup format` (4096);
//! - (t) containerd's tar-index mode: `mkfs.erofs --tar=i` (`--ungzip=RAW` for a gzip
//!   layer, dumping the decompressed tar), the tar appended to the index (`cat`, as the
//!   blob is `[index][tar]`), `veritysetup format` 512/512 appended.
//! - (h) the floor, not a pipeline: `layerpass verity format` of the tar alone into a hash
//!   file at the index's parameters (512-byte data blocks, 4096-byte hash blocks), i.e. the
//!   dm-verity hashing every verified layer of this tar must do at least (plain tar only).
//!
//! Every contender ends with `sync`. Cold: `sync` and `echo 3 > /proc/sys/vm/drop_caches`
//! before the contender (root); hot: the input read once before it. Bytes written: what
//! each pipeline leaves on disk (for (i), its own report: metadata, tree, sidecar and a
//! decompressed tar).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};

use super::convert::{
    CONTAINERD_MKFS_ARGS, Sample, build_corpus, gzip_once, measure, remove, warm,
};
use super::layerpass_binary;
use super::stats::{list, median};
use crate::tools::erofs_utils::ErofsUtils;
use crate::tools::find_tool;

const NAMES: [&str; 5] = [
    "(i) layerpass convert layer --index",
    "(f) layerpass convert layer (full)",
    "(c) mkfs.erofs --tar=f + veritysetup 4096",
    "(t) mkfs.erofs --tar=i + append + veritysetup 512",
    "(h) floor: layerpass verity format of the tar, 512/4096",
];

/// One contender's samples: (sample, bytes written).
type Samples = Vec<(Sample, u64)>;

struct Tools {
    layerpass: PathBuf,
    erofs: ErofsUtils,
    veritysetup: PathBuf,
}

/// Runs the index benchmark in `dir` on `tar` (built there when `None`), `runs` times per
/// contender and cache state; with `gzip`, on the tar compressed with `gzip -1`.
pub fn run_bench(dir: &Path, tar: Option<PathBuf>, runs: usize, gzip: bool) -> anyhow::Result<()> {
    ensure!(runs > 0, "runs must be at least 1");
    let tools = Tools {
        layerpass: layerpass_binary()?,
        erofs: crate::tools::erofs_utils::fetch()?,
        veritysetup: find_tool("veritysetup")
            .context("veritysetup not found: apt-get install cryptsetup-bin")?,
    };
    let tar = match tar {
        Some(t) => t,
        None => build_corpus(dir)?,
    };
    let input = if gzip { gzip_once(&tar)? } else { tar };
    let input_size = fs::metadata(&input)?.len();
    let work = dir.join("convert-index");
    fs::create_dir_all(&work)?;

    let mut report = format!(
        "convert --index: {} ({} MiB), {runs} runs per contender and cache state, alternating, {} cores",
        input.display(),
        input_size >> 20,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let mut roots = Vec::new();
    for cold in [false, true] {
        let mut samples: [Samples; 5] = Default::default();
        // the floor hashes a plain tar; with gzip there is no tar to hash before decompressing
        let contenders = if gzip { 4 } else { 5 };
        for i in 0..runs {
            for k in 0..contenders {
                let c = (i + k) % contenders;
                prepare(&input, cold)?;
                let s = match c {
                    0 => index(&tools, &input, &work, &mut roots)?,
                    1 => full(&tools, &input, &work)?,
                    2 => containerd_full(&tools, &input, &work, gzip)?,
                    3 => containerd_index(&tools, &input, &work, gzip)?,
                    _ => hash_floor(&tools, &input, &work)?,
                };
                samples[c].push(s);
            }
        }
        report.push_str(&format!(
            "\n-- page cache {} --",
            if cold {
                "cold (drop_caches before each)"
            } else {
                "hot"
            }
        ));
        let medians: Vec<Duration> = samples
            .iter()
            .map(|s| median(&s.iter().map(|(x, _)| x.time).collect::<Vec<_>>()))
            .collect();
        for (c, s) in samples.iter().enumerate().take(contenders) {
            let times: Vec<Duration> = s.iter().map(|(x, _)| x.time).collect();
            let cpu = median(&s.iter().map(|(x, _)| x.cpu).collect::<Vec<_>>());
            let written = s.iter().map(|(_, b)| *b).max().unwrap_or(0);
            report.push_str(&format!(
                "\n{:<50}: median {:.3} s  CPU {:.3} s  written {} MiB  [{}]",
                NAMES[c],
                medians[c].as_secs_f64(),
                cpu.as_secs_f64(),
                written >> 20,
                list(&times)
            ));
        }
        let ours = medians[0].as_secs_f64();
        for (c, what) in [(2, "(c)"), (1, "(f)"), (3, "(t)"), (4, "(h)")]
            .into_iter()
            .take(contenders - 1)
        {
            report.push_str(&format!(
                "\nwall ratio {what} / (i): {:.2}x",
                medians[c].as_secs_f64() / ours
            ));
        }
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "index root hashes differ between runs: {roots:?}"
    );
    report.push_str(&format!(
        "\nindex root hash (every run): {}",
        roots.first().map_or("-", String::as_str)
    ));
    let _ = fs::remove_dir_all(&work);
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(())
}

/// Hot: the input read into the page cache; cold: written back and dropped.
fn prepare(input: &Path, cold: bool) -> anyhow::Result<()> {
    if cold {
        crate::tools::run(&mut Command::new("sync"))?;
        fs::write("/proc/sys/vm/drop_caches", b"3\n")
            .context("cannot drop the page cache (the cold runs need root)")?;
    } else {
        warm(input)?;
    }
    Ok(())
}

fn sum(parts: &[Sample]) -> Sample {
    Sample {
        time: parts.iter().map(|s| s.time).sum(),
        cpu: parts.iter().map(|s| s.cpu).sum(),
        rss_kib: parts.iter().map(|s| s.rss_kib).max().unwrap_or(0),
    }
}

fn sync() -> anyhow::Result<Sample> {
    Ok(measure(&mut Command::new("sync"))?.0)
}

fn size(p: &Path) -> u64 {
    fs::metadata(p).map_or(0, |m| m.len())
}

fn with(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn index(
    t: &Tools,
    input: &Path,
    work: &Path,
    roots: &mut Vec<String>,
) -> anyhow::Result<(Sample, u64)> {
    let out = work.join("index.meta");
    let clear = || {
        for s in ["", ".tree", ".dmverity", ".tar"] {
            remove(&[&with(&out, s)]);
        }
    };
    clear();
    let (s1, stdout) = measure(
        Command::new(&t.layerpass)
            .args(["convert", "layer", "--index", "--json"])
            .arg(input)
            .arg(&out),
    )?;
    let s2 = sync()?;
    let r: serde_json::Value = serde_json::from_slice(&stdout)?;
    roots.push(r["root_hash"].as_str().unwrap_or_default().to_owned());
    let written = r["bytes_written"].as_u64().unwrap_or_default();
    clear();
    Ok((sum(&[s1, s2]), written))
}

fn full(t: &Tools, input: &Path, work: &Path) -> anyhow::Result<(Sample, u64)> {
    let out = work.join("full.erofs");
    remove(&[&out, &with(&out, ".dmverity")]);
    let (s1, _) = measure(
        Command::new(&t.layerpass)
            .args(["convert", "layer", "--json"])
            .arg(input)
            .arg(&out),
    )?;
    let s2 = sync()?;
    let written = size(&out) + size(&with(&out, ".dmverity"));
    remove(&[&out, &with(&out, ".dmverity")]);
    Ok((sum(&[s1, s2]), written))
}

fn containerd_full(
    t: &Tools,
    input: &Path,
    work: &Path,
    gzip: bool,
) -> anyhow::Result<(Sample, u64)> {
    let out = work.join("mkfs-full.erofs");
    remove(&[&out]);
    let (s1, _) = measure(
        t.erofs
            .command("mkfs.erofs")
            .args(CONTAINERD_MKFS_ARGS)
            .args(gzip.then_some("--ungzip"))
            .arg(&out)
            .arg(input),
    )?;
    let (s2, _) = measure(
        Command::new(&t.veritysetup)
            .args(["format", "--salt", &"00".repeat(32)])
            .arg(format!("--hash-offset={}", size(&out)))
            .arg(&out)
            .arg(&out),
    )?;
    let s3 = sync()?;
    let written = size(&out);
    remove(&[&out]);
    Ok((sum(&[s1, s2, s3]), written))
}

fn containerd_index(
    t: &Tools,
    input: &Path,
    work: &Path,
    gzip: bool,
) -> anyhow::Result<(Sample, u64)> {
    let out = work.join("mkfs-index.erofs");
    let raw = work.join("mkfs-index.raw.tar");
    remove(&[&out, &raw]);
    let mut mkfs = t.erofs.command("mkfs.erofs");
    mkfs.args(["--tar=i", "--aufs", "--quiet"]);
    if gzip {
        mkfs.arg(format!("--ungzip={}", raw.display()));
    }
    let (s1, _) = measure(mkfs.arg(&out).arg(input))?;
    let data = if gzip { raw.clone() } else { input.to_owned() };
    // the blob is [index][tar]: the tar appended to the index
    let (s2, _) = measure(
        Command::new("sh")
            .args(["-c", "cat \"$1\" >> \"$2\"", "append"])
            .arg(&data)
            .arg(&out),
    )?;
    let (s3, _) = measure(
        Command::new(&t.veritysetup)
            .args([
                "format",
                "--data-block-size=512",
                "--hash-block-size=512",
                "--salt",
                &"00".repeat(32),
            ])
            .arg(format!("--hash-offset={}", size(&out)))
            .arg(&out)
            .arg(&out),
    )?;
    let s4 = sync()?;
    let written = size(&out) + size(&raw);
    remove(&[&out, &raw]);
    Ok((sum(&[s1, s2, s3, s4]), written))
}

/// The hashing floor: the tree of the tar alone at the index's verity parameters.
fn hash_floor(t: &Tools, input: &Path, work: &Path) -> anyhow::Result<(Sample, u64)> {
    let tree = work.join("floor.tree");
    remove(&[&tree]);
    let (s1, _) = measure(
        Command::new(&t.layerpass)
            .args([
                "verity",
                "format",
                "--data-block-size",
                "512",
                "--hash-block-size",
                "4096",
            ])
            .args(["--salt", &"00".repeat(32), "--hash-file"])
            .arg(&tree)
            .arg(input),
    )?;
    let s2 = sync()?;
    let written = size(&tree);
    remove(&[&tree]);
    Ok((sum(&[s1, s2]), written))
}

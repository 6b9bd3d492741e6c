//! `layerpass-bench convert`: a large real layer (a Debian bookworm minbase rootfs from
//! debootstrap plus the contents of a few big packages, about 1 GiB) converted to EROFS
//! with dm-verity by `layerpass convert layer`, against, in the same run and alternating:
//!
//! - (a) `tar -x` into a fresh directory, then `sync` (the overlayfs snapshotter's apply);
//! - (b) containerd's EROFS differ pipeline: `mkfs.erofs --tar=f` ≥ 1.8 (Debian 13's, from
//!   `scripts/erofs-utils-trixie`; its version is printed) with containerd's
//!   options, then `veritysetup format` appending the tree to the image, then `sync`.
//!
//! layerpass fsyncs its output, so every contender ends with its output on disk. Each
//! tool runs as its own process; its peak RSS comes from `wait4`. The tar is read once
//! first so every run starts page-cache hot.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::layerpass_binary;
use super::stats::{list, median};
use crate::tools::{find_tool, run};

/// Packages unpacked on top of the minbase rootfs (about 800 MiB, tens of thousands of
/// files: Go and kernel header sources, LLVM, GCC, Python and Perl libraries).
const EXTRA_PACKAGES: [&str; 10] = [
    "golang-1.19-src",
    "linux-headers-6.1.0-47-common",
    "python3-botocore",
    "llvm-14-dev",
    "libllvm14",
    "gcc-12",
    "libicu72",
    "python3-numpy",
    "perl-modules-5.36",
    "libpython3.11-stdlib",
];

/// Options of containerd's EROFS differ (`mkfs.erofs` arguments it passes, 2.x).
pub(super) const CONTAINERD_MKFS_ARGS: [&str; 5] = [
    "--tar=f",
    "--aufs",
    "--quiet",
    "-Enoinline_data",
    "--sort=none",
];

/// One measured run of one contender.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) time: Duration,
    /// User + system CPU time.
    pub(super) cpu: Duration,
    /// Peak RSS of the largest process of the contender, KiB.
    pub(super) rss_kib: i64,
}

/// Runs the benchmark in `dir` on `tar` (built there from Debian packages when `None`),
/// `runs` times per contender; with `gzip`, on the tar compressed with `gzip -1` (made once
/// next to it), which every contender decompresses itself.
pub fn run_bench(dir: &Path, tar: Option<PathBuf>, runs: usize, gzip: bool) -> anyhow::Result<()> {
    ensure!(runs > 0, "runs must be at least 1");
    let layerpass = layerpass_binary()?;
    let erofs = crate::tools::erofs_utils::fetch()?;
    let veritysetup = find_tool("veritysetup")
        .context("veritysetup not found: apt-get install cryptsetup-bin")?;
    let tar = match tar {
        Some(t) => t,
        None => build_corpus(dir)?,
    };
    let tar_size = fs::metadata(&tar)
        .with_context(|| format!("cannot stat {}", tar.display()))?
        .len();
    let entries = count_entries(&tar)?;
    let (tar, tar_size) = if gzip {
        let gz = gzip_once(&tar)?;
        let size = fs::metadata(&gz)?.len();
        (gz, size)
    } else {
        (tar, tar_size)
    };
    warm(&tar)?;

    let (mut ours, mut untar, mut differ) = (Vec::new(), Vec::new(), Vec::new());
    let mut untar_dirs = RemoveOnDrop(Vec::new());
    let mut root_hashes = Vec::new();
    for i in 0..runs {
        // alternate the order so no contender always runs on a freshly synced disk
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let out = dir.join("layerpass.erofs");
                    remove(&[&out, &out.with_extension("erofs.dmverity")]);
                    let (s, stdout) = measure(
                        Command::new(&layerpass)
                            .args(["convert", "layer", "--json"])
                            .arg(&tar)
                            .arg(&out),
                    )?;
                    let report: serde_json::Value = serde_json::from_slice(&stdout)?;
                    root_hashes.push(report["root_hash"].as_str().unwrap_or_default().to_owned());
                    ours.push(s);
                }
                1 => {
                    // A fresh directory per run, all removed at the end: ext4 does not
                    // reuse inodes freed in the last 30 s and scans past them one by one,
                    // which made tar -x right after an `rm -r` of the last run's 36,906
                    // files 15 times slower than the first run (not what a snapshotter
                    // extracting a layer meets).
                    let target = dir.join(format!("untar-{i}"));
                    remove_dir(&target)?;
                    fs::create_dir(&target)?;
                    untar_dirs.0.push(target.clone());
                    let (s1, _) = measure(
                        Command::new("tar")
                            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner"])
                            .arg(if gzip { "-xzpf" } else { "-xpf" })
                            .arg(&tar)
                            .arg("-C")
                            .arg(&target),
                    )?;
                    let (s2, _) = measure(&mut Command::new("sync"))?;
                    untar.push(Sample {
                        time: s1.time + s2.time,
                        cpu: s1.cpu + s2.cpu,
                        rss_kib: s1.rss_kib.max(s2.rss_kib),
                    });
                }
                _ => {
                    let out = dir.join("mkfs.erofs");
                    remove(&[&out]);
                    let (s1, _) = measure(
                        erofs
                            .command("mkfs.erofs")
                            .args(CONTAINERD_MKFS_ARGS)
                            .args(gzip.then_some("--ungzip"))
                            .arg(&out)
                            .arg(&tar),
                    )?;
                    let size = fs::metadata(&out)?.len();
                    let (s2, _) = measure(
                        Command::new(&veritysetup)
                            .args(["format", "--salt", &"00".repeat(32)])
                            .arg(format!("--hash-offset={size}"))
                            .arg(&out)
                            .arg(&out),
                    )?;
                    let (s3, _) = measure(&mut Command::new("sync"))?;
                    differ.push(Sample {
                        time: s1.time + s2.time + s3.time,
                        cpu: s1.cpu + s2.cpu + s3.cpu,
                        rss_kib: s1.rss_kib.max(s2.rss_kib),
                    });
                }
            }
        }
    }
    drop(untar_dirs);
    ensure!(
        root_hashes.windows(2).all(|w| w[0] == w[1]),
        "layerpass root hashes differ between runs: {root_hashes:?}"
    );

    let (m_ours, m_untar, m_differ) = (
        median(&times(&ours)),
        median(&times(&untar)),
        median(&times(&differ)),
    );
    let cpu = |s: &[Sample]| median(&s.iter().map(|s| s.cpu).collect::<Vec<_>>()).as_secs_f64();
    let max_rss = |s: &[Sample]| s.iter().map(|s| s.rss_kib).max().unwrap_or(0) >> 10;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let line = |name: &str, m: Duration, s: &[Sample]| {
        format!(
            "{name:<50}: median {:.3} s  CPU {:.3} s  peak RSS {} MiB  [{}]",
            m.as_secs_f64(),
            cpu(s),
            max_rss(s),
            list(&times(s))
        )
    };
    let report = format!(
        "convert: {} ({} MiB, {entries} entries), {runs} runs each, alternating, page cache hot, {cores} cores\n\
         {}\n{}\n{}\n\
         wall ratio (a) / layerpass: {:.2}x\n\
         wall ratio (b) / layerpass: {:.2}x\n\
         CPU ratio  (b) / layerpass: {:.2}x\n\
         layerpass root hash (every run): {}",
        tar.display(),
        tar_size >> 20,
        line(
            "layerpass convert layer (EROFS + verity, fsync)",
            m_ours,
            &ours
        ),
        line("(a) tar -x + sync", m_untar, &untar),
        line(
            &format!(
                "(b) mkfs.erofs {} --tar=f + veritysetup + sync",
                erofs.version()
            ),
            m_differ,
            &differ
        ),
        m_untar.as_secs_f64() / m_ours.as_secs_f64(),
        m_differ.as_secs_f64() / m_ours.as_secs_f64(),
        cpu(&differ) / cpu(&ours),
        root_hashes.first().map_or("-", String::as_str),
    );
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(())
}

/// Directories removed when the benchmark ends, however it ends.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = remove_dir(d);
        }
    }
}

/// `tar` compressed with `gzip -1` into `tar.gz` beside it, unless that exists already.
pub(super) fn gzip_once(tar: &Path) -> anyhow::Result<PathBuf> {
    let mut name = tar.as_os_str().to_owned();
    name.push(".gz");
    let gz = PathBuf::from(name);
    if !gz.exists() {
        let mut part = gz.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let out = fs::File::create(&part)?;
        run(Command::new("gzip").args(["-1", "-c"]).arg(tar).stdout(out))?;
        fs::rename(&part, &gz)?;
    }
    Ok(gz)
}

fn times(s: &[Sample]) -> Vec<Duration> {
    s.iter().map(|s| s.time).collect()
}

/// Runs `cmd` to completion; wall time, peak RSS (from `wait4`) and stdout.
pub(super) fn measure(cmd: &mut Command) -> anyhow::Result<(Sample, Vec<u8>)> {
    let out_file = tempfile::tempfile()?;
    let err_file = tempfile::tempfile()?;
    cmd.stdout(out_file.try_clone()?)
        .stderr(err_file.try_clone()?);
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage`, which wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; both pointers are valid for writes.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let time = start.elapsed();
    ensure!(
        rc == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let read = |mut f: fs::File| -> anyhow::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        f.rewind()?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    };
    let stdout = read(out_file)?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "{cmd:?} failed (status {status}): {}",
            String::from_utf8_lossy(&read(err_file)?)
        );
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Ok((
        Sample {
            time,
            cpu,
            rss_kib: usage.ru_maxrss,
        },
        stdout,
    ))
}

pub(super) fn remove(paths: &[&Path]) {
    for p in paths {
        let _ = fs::remove_file(p);
    }
}

fn remove_dir(p: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", p.display()))
        }
        _ => Ok(()),
    }
}

fn count_entries(tar: &Path) -> anyhow::Result<usize> {
    let out = run(Command::new("tar").arg("-tf").arg(tar))?;
    Ok(out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count())
}

pub(super) fn warm(path: &Path) -> anyhow::Result<()> {
    let mut f = fs::File::open(path)?;
    std::io::copy(&mut f, &mut std::io::sink())?;
    Ok(())
}

/// Builds `dir/convert-corpus/rootfs.tar` once (needs root, debootstrap, apt): a Debian
/// bookworm minbase rootfs with `EXTRA_PACKAGES` unpacked into it.
pub fn build_corpus(dir: &Path) -> anyhow::Result<PathBuf> {
    let base = dir.join("convert-corpus");
    let tar = base.join("rootfs.tar");
    if tar.is_file() {
        return Ok(tar);
    }
    let debootstrap =
        find_tool("debootstrap").context("debootstrap not found: apt-get install debootstrap")?;
    let rootfs = base.join("rootfs");
    let debs = base.join("debs");
    remove_dir(&rootfs)?;
    fs::create_dir_all(&debs)?;
    let mirror = bookworm_mirror()?;
    run(Command::new(debootstrap)
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg(&mirror))?;
    run(Command::new("apt-get")
        .arg("download")
        .args(EXTRA_PACKAGES)
        .current_dir(&debs))?;
    for e in fs::read_dir(&debs)? {
        let deb = e?.path();
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&rootfs))?;
    }
    let partial = base.join("rootfs.tar.partial");
    run(Command::new("tar")
        .args(["--xattrs", "--numeric-owner", "--sort=name", "-cf"])
        .arg(&partial)
        .arg("-C")
        .arg(&rootfs)
        .arg("."))?;
    fs::rename(&partial, &tar)?;
    remove_dir(&rootfs)?;
    Ok(tar)
}

/// The Debian mirror apt already uses for bookworm.
fn bookworm_mirror() -> anyhow::Result<String> {
    let out =
        run(Command::new("apt-get").args(["indextargets", "--format", "$(REPO_URI) $(RELEASE)"]))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_suffix(" bookworm").map(str::to_owned))
        .context("no Debian bookworm source configured for apt")
}

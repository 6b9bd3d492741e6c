//! `layerpass-bench run`: the time from a mount plan to a ready rootfs in a real guest
//! (QEMU, Debian's cloud kernel), layerpass against unpacking the same layers in the guest,
//! both in ONE boot per image set and alternating:
//!
//! - layerpass: each layer tar converted by `layerpass convert layer` (EROFS + dm-verity),
//!   exported by `layerpass blk serve` (a disk per layer, or `--composite` for many
//!   layers), planned by the host's plan builder (what `layerpass plan` prints); the guest
//!   times `layerpass-guest -v mount --plan` (a tmpfs upper) and reads the agent's
//!   `phase NAME us=N` debug events for the per-phase breakdown.
//! - unpacking (what guest-pull runtimes do): the same uncompressed tars concatenated on
//!   one raw virtio-blk disk (each at a 1 MiB-aligned offset), and in the guest, onto an
//!   ext4 scratch disk (a fresh one per run, formatted on the host without lazy init):
//!   `dd | tar -x` (busybox) per layer into its own directory, then the overlay mount.
//!
//! The guest's page cache is dropped before each timed run. Guest clock: `now at` of
//! `/proc/timer_list` (ns; busybox `date` has no `%N`).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Args;
use layerpass::plan::{PlannedLayer, Upper};

use super::stats::{median_f64, median_range, ratio};
use crate::plans;
use crate::tools::{find_tool, run};
use crate::vm::{
    ChildGuard, Initramfs, TestImage, VhostUserBlk, VmBuilder, accel, assets, serve_blk,
    static_binary, static_binary_release,
};

/// Arguments of `layerpass-bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image sets to measure: debian-10, small-16, small-128.
    #[arg(long, value_delimiter = ',', default_values_t = ["debian-10".to_owned(), "small-16".to_owned(), "small-128".to_owned()])]
    pub sets: Vec<String>,
    /// Timed runs of each contender per boot.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// vCPU counts; one boot per image set and count.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32])]
    pub cpus: Vec<u32>,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory_mib: u32,
    /// Put the dev (unoptimised) build of `layerpass-guest` in the guest, as the VM tests
    /// do, instead of the release build.
    #[arg(long)]
    pub dev_guest: bool,
}

/// Debian bookworm packages whose data tars are the layers of `debian-10` (about 500 MB
/// installed).
const DEBIAN_PACKAGES: [&str; 10] = [
    "libllvm15",
    "libllvm14",
    "libclang-cpp15",
    "gcc-12",
    "libicu72",
    "g++-12",
    "cpp-12",
    "libstdc++-12-dev",
    "perl-modules-5.36",
    "libgcc-12-dev",
];

/// Phases the agent reports per layer, in order.
const LAYER_PHASES: [&str; 6] = [
    "find_disk",
    "dm_create",
    "dm_load",
    "dm_resume",
    "dm_node",
    "mount_erofs",
];
/// Phases the agent reports once per mount.
const MOUNT_PHASES: [&str; 3] = ["upper", "overlay", "state_events"];

/// A layer of an image set: its tar and its converted blob.
struct Layer {
    tar: PathBuf,
    tar_size: u64,
    blob: PathBuf,
    diff_id: String,
}

/// Runs the benchmark for each image set and vCPU count.
pub fn run_bench(dir: &Path, args: &RunArgs) -> anyhow::Result<()> {
    ensure!(args.runs > 0, "runs must be at least 1");
    let mkfs = find_tool("mkfs.ext4").context("mkfs.ext4 not found: apt-get install e2fsprogs")?;
    let host_bin = static_binary("layerpass", "layerpass")?;
    let guest_bin = if args.dev_guest {
        static_binary("layerpass-guest", "layerpass-guest")?
    } else {
        static_binary_release("layerpass-guest", "layerpass-guest")?
    };
    let kernel = assets::cloud_kernel()?;
    let accel = accel::detect()?;
    for set in &args.sets {
        let tars = match set.as_str() {
            "debian-10" => debian_tars(dir)?,
            "small-16" => small_tars(dir, 16)?,
            "small-128" => small_tars(dir, 128)?,
            other => bail!("unknown image set {other:?}: debian-10, small-16 or small-128"),
        };
        let layers = convert_all(&host_bin, &dir.join("run-corpus").join(set), &tars)?;
        for &cpus in &args.cpus {
            let env = Env {
                dir,
                mkfs: &mkfs,
                host_bin: &host_bin,
                guest_bin: &guest_bin,
                kernel: &kernel,
            };
            let out = boot_and_measure(&env, set, &layers, cpus, args)?;
            let report = report(set, &layers, cpus, accel.name(), args.runs, &out)?;
            writeln!(std::io::stdout().lock(), "{report}")?;
        }
    }
    Ok(())
}

struct Env<'a> {
    dir: &'a Path,
    mkfs: &'a Path,
    host_bin: &'a Path,
    guest_bin: &'a Path,
    kernel: &'a assets::Kernel,
}

/// `dir/run-corpus/debian-10/NN-PACKAGE.tar`: each package's data tar, made once.
pub(crate) fn debian_tars(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let base = dir.join("run-corpus").join("debian-10");
    let debs = base.join("debs");
    fs::create_dir_all(&debs)?;
    let mut tars = Vec::new();
    for (i, pkg) in DEBIAN_PACKAGES.iter().enumerate() {
        let tar = base.join(format!("{i:02}-{pkg}.tar"));
        tars.push(tar.clone());
        if tar.is_file() {
            continue;
        }
        let find = |debs: &Path| -> anyhow::Result<Option<PathBuf>> {
            for e in fs::read_dir(debs)? {
                let p = e?.path();
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                if name.starts_with(&format!("{pkg}_")) && name.ends_with(".deb") {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        };
        let deb = match find(&debs)? {
            Some(d) => d,
            None => {
                run(Command::new("apt-get")
                    .args(["download", pkg])
                    .current_dir(&debs))?;
                find(&debs)?.with_context(|| format!("apt-get download {pkg}: no .deb"))?
            }
        };
        let part = tar.with_extension("tar.part");
        let out = fs::File::create(&part)?;
        run(Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(out))?;
        fs::rename(&part, &tar)?;
    }
    Ok(tars)
}

/// `dir/run-corpus/small-N/NNN.tar`: N layers of 50 distinct 4 KiB files in 5 directories.
fn small_tars(dir: &Path, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    let base = dir.join("run-corpus").join(format!("small-{n}"));
    fs::create_dir_all(&base)?;
    let mut tars = Vec::new();
    for i in 0..n {
        let tar = base.join(format!("{i:03}.tar"));
        tars.push(tar.clone());
        if tar.is_file() {
            continue;
        }
        let tree = tempfile::tempdir_in(&base)?;
        for f in 0..50usize {
            let d = tree.path().join(format!("l{i}/d{}", f % 5));
            fs::create_dir_all(&d)?;
            let data: Vec<u8> = (0..4096usize)
                .map(|b| (b.wrapping_mul(31) ^ f.wrapping_mul(7) ^ i.wrapping_mul(13)) as u8)
                .collect();
            fs::write(d.join(format!("f{f}")), data)?;
        }
        let part = tar.with_extension("tar.part");
        run(Command::new("tar")
            .args([
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "--sort=name",
                "-C",
            ])
            .arg(tree.path())
            .arg("-cf")
            .arg(&part)
            .arg("."))?;
        fs::rename(&part, &tar)?;
    }
    Ok(tars)
}

/// Converts each tar with `layerpass convert layer --json` (once: the blob and report are
/// kept beside the tar).
fn convert_all(host_bin: &Path, base: &Path, tars: &[PathBuf]) -> anyhow::Result<Vec<Layer>> {
    let blobs = base.join("erofs");
    fs::create_dir_all(&blobs)?;
    tars.iter()
        .map(|tar| {
            let stem = tar.file_stem().unwrap_or_default().to_string_lossy();
            let blob = blobs.join(format!("{stem}.erofs"));
            let report_path = blobs.join(format!("{stem}.json"));
            if !report_path.is_file() {
                let out = run(Command::new(host_bin)
                    .args(["convert", "layer", "--json"])
                    .arg(tar)
                    .arg(&blob))?;
                fs::write(&report_path, &out.stdout)?;
            }
            let report: serde_json::Value = serde_json::from_slice(&fs::read(&report_path)?)?;
            let diff_id = report["diff_id"]
                .as_str()
                .context("convert report without diff_id")?
                .to_owned();
            Ok(Layer {
                tar: tar.clone(),
                tar_size: fs::metadata(tar)?.len(),
                blob,
                diff_id,
            })
        })
        .collect()
}

const MIB: u64 = 1 << 20;

/// The guest script: `runs` alternating runs of each contender.
fn guest_script(layers: &[Layer], runs: usize) -> String {
    let mut s = String::from(
        r#"
G=/bin/layerpass-guest
now() { sed -n '/^now at /{s/^now at \([0-9]*\) nsecs.*/\1/p;q}' /proc/timer_list; }
dmcount() { ls /sys/block | grep -c '^dm-' || true; }
TARS=$(lp_disk lp-tars)
echo "BOOT-DM $(dmcount)"
lp_run() {
  echo 3 > /proc/sys/vm/drop_caches
  t0=$(now)
  $G --version > /dev/null
  t1=$(now)
  echo "EXEC-US $1 $(( (t1 - t0) / 1000 ))"
  t0=$(now)
  r=$($G -v mount --plan /plans/lp.json 2>/tmp/lp.log)
  t1=$(now)
  echo "LP-US $1 $(( (t1 - t0) / 1000 ))"
  sed -n "s/.* phase \([a-z_]*\) us=\([0-9]*\).*/PHASE $1 \1 \2/p" /tmp/lp.log
  echo "LP-CHECK $1 files=$(find "$r" -type f | wc -l) dm=$(dmcount)"
  $G unmount lp
  echo "LP-AFTER $1 dm=$(dmcount) mapper=$(ls /dev/mapper | grep -vc '^control$' || true)"
}
"#,
    );
    // unpack: dd each tar out of the tar disk into its own directory, then overlay
    s.push_str("peer_run() {\n  sc=$(lp_disk lp-scratch$1)\n  p=/peer$1\n  mkdir -p $p\n  mount -t ext4 $sc $p\n  cd $p\n  echo 3 > /proc/sys/vm/drop_caches\n  t0=$(now)\n");
    let mut offset = 0u64;
    let mut lowers = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let count = l.tar_size.div_ceil(MIB);
        let _ = writeln!(
            s,
            "  mkdir l{i}\n  dd if=$TARS bs=1M skip={} count={count} 2>/dev/null | tar -x -C l{i}",
            offset / MIB
        );
        offset += count * MIB;
        lowers.push(format!("l{i}"));
    }
    let _ = write!(
        s,
        "  mkdir u w m\n  mount -t overlay overlay -o lowerdir={},upperdir=u,workdir=w m\n  t1=$(now)\n",
        lowers.join(":")
    );
    s.push_str(
        r#"  echo "UNPACK-US $1 $(( (t1 - t0) / 1000 ))"
  t2=$(now)
  sync
  t3=$(now)
  echo "SYNC-US $1 $(( (t3 - t2) / 1000 ))"
  echo "PEER-CHECK $1 files=$(find m -type f | wc -l)"
  cd /
  umount $p/m
  umount $p
}
"#,
    );
    for r in 0..runs {
        if r % 2 == 0 {
            let _ = writeln!(s, "lp_run {r}\npeer_run {r}");
        } else {
            let _ = writeln!(s, "peer_run {r}\nlp_run {r}");
        }
    }
    s
}

/// Boots one guest for `set` with `cpus` vCPUs and returns its console.
fn boot_and_measure(
    env: &Env<'_>,
    set: &str,
    layers: &[Layer],
    cpus: u32,
    args: &RunArgs,
) -> anyhow::Result<String> {
    let work = tempfile::Builder::new()
        .prefix(&format!("run-{set}-"))
        .tempdir_in(env.dir)?;
    let w = work.path();
    let queues = cpus.to_string();
    let mut guards: Vec<ChildGuard> = Vec::new();
    let mut sockets = Vec::new();
    let composite = layers.len() > 24;
    let planned: Vec<PlannedLayer> = if composite {
        let sock = w.join("comp.sock");
        let mut a: Vec<String> = vec!["--queues".into(), queues.clone(), "--composite".into()];
        a.extend(
            layers
                .iter()
                .map(|l| format!("{}@{}", l.blob.display(), l.diff_id)),
        );
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        guards.push(serve_blk(env.host_bin, &sock, &refs)?);
        sockets.push(sock);
        layers
            .iter()
            .map(|l| plans::on_composite(&l.blob, &l.diff_id))
            .collect::<anyhow::Result<_>>()?
    } else {
        let mut v = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let sock = w.join(format!("l{i}.sock"));
            let serial = format!("lp-l{i}");
            let blob = l.blob.to_string_lossy();
            guards.push(serve_blk(
                env.host_bin,
                &sock,
                &["--queues", &queues, "--layer", &blob, "--serial", &serial],
            )?);
            sockets.push(sock);
            v.push(plans::on_disk(&l.blob, &l.diff_id, &serial)?);
        }
        v
    };
    let plan = plans::plan_json(
        "lp",
        &planned,
        Upper::Tmpfs {
            size_bytes: 64 << 20,
        },
    )?;

    // The tar disk: every tar at a 1 MiB-aligned offset.
    let tars_img = w.join("tars.img");
    {
        let mut out = fs::File::create(&tars_img)?;
        let mut offset = 0u64;
        for l in layers {
            let n = std::io::copy(&mut fs::File::open(&l.tar)?, &mut out)?;
            offset += n.div_ceil(MIB) * MIB;
            out.set_len(offset)?;
            std::io::Seek::seek(&mut out, std::io::SeekFrom::Start(offset))?;
        }
    }
    let total: u64 = layers.iter().map(|l| l.tar_size).sum();
    let scratch_size = (total * 2 + 256 * MIB).div_ceil(MIB) * MIB;
    let mut scratches = Vec::new();
    for r in 0..args.runs {
        let img = w.join(format!("scratch{r}.img"));
        fs::File::create(&img)?.set_len(scratch_size)?;
        run(Command::new(env.mkfs)
            .args([
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ])
            .arg(&img))?;
        scratches.push(img);
    }

    let initrd = w.join("initrd.gz");
    Initramfs::standard(env.kernel)?
        .host_file("/bin/layerpass-guest", env.guest_bin, 0o755)
        .file("/plans/lp.json", &plan, 0o644)
        .test_script(&guest_script(layers, args.runs))
        .write(&initrd)?;
    let mut builder = VmBuilder::new(&format!("bench-run-{set}-{cpus}cpu"), env.kernel, &initrd)
        .smp(cpus)
        .memory_mib(args.memory_mib)
        .disk(&tars_img, "lp-tars");
    for (r, img) in scratches.iter().enumerate() {
        builder = builder.disk_rw(img, &format!("lp-scratch{r}"));
    }
    for sock in &sockets {
        builder = builder.vhost_user_blk(VhostUserBlk {
            socket: sock.clone(),
            num_queues: Some(u16::try_from(cpus)?),
            reconnect_ms: None,
        });
    }
    eprintln!(
        "run: {set}: booting with {cpus} vCPU(s), {} layers",
        layers.len()
    );
    let mut vm = builder.spawn()?;
    let result = vm.wait_result(Duration::from_secs(3600));
    let console = vm.console();
    if let Err(e) = result {
        bail!("{e:#}\n{console}");
    }
    drop(guards);
    Ok(console)
}

/// Values of console lines `PREFIX RUN VALUE` as (run, value).
fn per_run(console: &str, prefix: &str) -> Vec<(usize, String)> {
    console
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (run, value) = rest.trim().split_once(' ')?;
            Some((run.parse().ok()?, value.trim().to_owned()))
        })
        .collect()
}

fn ms_values(console: &str, prefix: &str) -> anyhow::Result<Vec<f64>> {
    per_run(console, prefix)
        .into_iter()
        .map(|(_, v)| Ok(v.parse::<f64>()? / 1000.0))
        .collect()
}

/// Samples in ms, comma-separated.
fn list_ms(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The printed report of one boot.
fn report(
    set: &str,
    layers: &[Layer],
    cpus: u32,
    accel: &str,
    runs: usize,
    console: &str,
) -> anyhow::Result<String> {
    let n = layers.len() as f64;
    let lp = ms_values(console, "LP-US ")?;
    let unpack = ms_values(console, "UNPACK-US ")?;
    let sync = ms_values(console, "SYNC-US ")?;
    let exec = ms_values(console, "EXEC-US ")?;
    ensure!(
        lp.len() == runs && unpack.len() == runs,
        "expected {runs} runs of each, got {} and {}",
        lp.len(),
        unpack.len()
    );
    // Both views must hold the same files, and every unmount must remove the dm devices.
    let lp_checks = per_run(console, "LP-CHECK ");
    let peer_checks = per_run(console, "PEER-CHECK ");
    for ((r, lc), (_, pc)) in lp_checks.iter().zip(&peer_checks) {
        let files = |s: &str| {
            s.split_whitespace()
                .find_map(|kv| kv.strip_prefix("files="))
                .unwrap_or_default()
                .to_owned()
        };
        ensure!(
            files(lc) == files(pc),
            "run {r}: layerpass sees {lc}, unpacking {pc}"
        );
    }
    for (r, after) in per_run(console, "LP-AFTER ") {
        ensure!(
            after == "dm=0 mapper=0",
            "run {r}: left after unmount: {after}"
        );
    }
    let total: u64 = layers.iter().map(|l| l.tar_size).sum();
    let files = lp_checks
        .first()
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let (m_lp, m_unpack) = (median_f64(&lp), median_f64(&unpack));
    let per_layer: Vec<f64> = lp.iter().map(|v| v / n).collect();
    let mut out = format!(
        "run: {set}: {} layers, {} MiB of tars ({files}, dm devices after unmount: 0), \
         {cpus} vCPU, {accel}, {runs} runs each, alternating, guest page cache dropped before each\n\
         layerpass-guest mount --plan (ms)           : {}  = {} ms per layer  [{}]\n\
         unpack: dd | busybox tar -x + overlay (ms)  : {}  [{}]\n\
         sync after unpacking, not counted (ms)       : {}\n\
         ratio unpack / layerpass (medians)          : {:.2}x\n\
         layerpass-guest --version alone, for scale (ms): {}\n",
        layers.len(),
        total >> 20,
        median_range(&lp, 1),
        median_range(&per_layer, 2),
        list_ms(&lp),
        median_range(&unpack, 1),
        list_ms(&unpack),
        median_range(&sync, 1),
        ratio(m_unpack, m_lp),
        median_range(&exec, 1),
    );
    // Breakdown: per run, the sum of each phase over the layers; median over the runs.
    let phases = per_run(console, "PHASE ");
    let sum_of = |name: &str, r: usize| -> f64 {
        phases
            .iter()
            .filter(|(run, v)| *run == r && v.split_whitespace().next() == Some(name))
            .filter_map(|(_, v)| v.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum::<f64>()
            / 1000.0
    };
    let mut accounted = vec![0.0; runs];
    out.push_str("layerpass breakdown (median over runs): ms per layer | ms per mount\n");
    for name in LAYER_PHASES {
        let v: Vec<f64> = (0..runs).map(|r| sum_of(name, r)).collect();
        for (a, x) in accounted.iter_mut().zip(&v) {
            *a += x;
        }
        let _ = writeln!(
            out,
            "  {name:<14} {:>8.3} | {:>8.1}",
            median_f64(&v) / n,
            median_f64(&v)
        );
    }
    for name in MOUNT_PHASES {
        let v: Vec<f64> = (0..runs).map(|r| sum_of(name, r)).collect();
        for (a, x) in accounted.iter_mut().zip(&v) {
            *a += x;
        }
        let _ = writeln!(out, "  {name:<14} {:>8} | {:>8.1}", "", median_f64(&v));
    }
    let rest: Vec<f64> = lp.iter().zip(&accounted).map(|(t, a)| t - a).collect();
    let _ = writeln!(
        out,
        "  {:<14} {:>8} | {:>8.1}  (process start, plan, policy, directories, unaccounted)",
        "other",
        "",
        median_f64(&rest)
    );
    Ok(out)
}

//! `layerpass-bench memory`: host memory for N VMs (default 4) reading every file of the
//! same ~500 MB image (the 10 Debian package layers of `layerpass-bench run`'s
//! `debian-10`):
//!
//! - layerpass: one `layerpass serve` daemon exports the image N times (one sandbox per
//!   VM, a disk per layer); each guest mounts it with `layerpass-guest mount --plan`
//!   (dm-verity, EROFS, overlay) and reads every file (`tar -c | wc -c`).
//! - ext4 copies (the peer): the image unpacked once on the host into an ext4 image
//!   (`mkfs.ext4 -d`), copied once per VM, each VM given its own copy as a read-only
//!   virtio-blk disk (QEMU's default writeback cache, so reads go through the host's
//!   page cache); each guest reads every file the same way.
//!
//! Measured while the N VMs are still running, after all have read everything:
//! - the host page cache held by the served files: every blob and tree of the daemon's
//!   cache on one side, the N ext4 images on the other, counted page by page with
//!   `mincore(2)` (exact, and immune to other processes' file I/O, unlike `Cached` in
//!   `/proc/meminfo`, which is printed alongside for reference). Each file's pages are
//!   dropped (`POSIX_FADV_DONTNEED` after `fsync`) before the VMs start.
//! - the daemon's resident memory: `RssAnon` (its own heap and stacks); its `RssShmem`
//!   is guest RAM it maps from QEMU's memfd, which QEMU already accounts for.
//! - QEMU's `RssAnon` summed over the VMs (its own memory, guest RAM excluded), the
//!   same order on both sides.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use serde_json::Value;

use super::run::debian_tars;
use super::stats::{median_f64, ratio};
use crate::tools::{find_tool, run};
use crate::vm::{
    ChildGuard, Initramfs, RESULT_MARKER, TestImage, VhostUserBlk, VmBuilder, VmGuard, accel,
    assets, static_binary, static_binary_release,
};

/// Arguments of `layerpass-bench memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// VMs running at once on each side.
    #[arg(long, default_value_t = 4)]
    pub vms: usize,
    /// Rounds (each measures both sides, alternating which goes first).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Guest memory per VM, MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u32,
    /// Put the dev (unoptimised) build of `layerpass-guest` in the guests.
    #[arg(long)]
    pub dev_guest: bool,
}

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
/// Bound on one side's boot + read of every file by all VMs (a hang guard, not a limit).
const READ_TIMEOUT: Duration = Duration::from_secs(3600);

/// What one side measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Host page cache held by the served files, bytes.
    served_cache: u64,
    /// Their total size, bytes.
    served_size: u64,
    /// `RssAnon` of the serving process (the daemon; 0 for the ext4 side), bytes.
    backend_anon: u64,
    /// `RssAnon` of the QEMU processes, summed, bytes.
    qemu_anon: u64,
    /// Growth of `Cached - Shmem` in `/proc/meminfo` (machine-wide), bytes.
    meminfo_growth: i64,
    /// Bytes each guest read (the `tar -c` stream), the first VM's.
    read: u64,
    /// Time from starting the VMs until all had read everything.
    elapsed: Duration,
}

impl Sample {
    fn total(&self) -> u64 {
        self.served_cache + self.backend_anon
    }
}

/// Runs the comparison `args.runs` times and prints each round and the medians.
pub fn run_bench(dir: &Path, args: &MemoryArgs) -> anyhow::Result<()> {
    ensure!(args.vms > 0, "vms must be at least 1");
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
    let tars = debian_tars(dir)?;
    let base = dir.join("run-corpus").join("memory");
    fs::create_dir_all(&base)?;
    let image = oci_layout(&base.join("image"), &tars)?;
    let rootfs = ext4_rootfs(&base, &tars, &mkfs)?;
    let interrupted = interrupt_flag()?;
    let env = Env {
        interrupted: &interrupted,
        dir,
        base: &base,
        host_bin: &host_bin,
        guest_bin: &guest_bin,
        kernel: &kernel,
        image: &image,
        rootfs: &rootfs,
        args,
    };
    let mut lp = Vec::new();
    let mut peer = Vec::new();
    for r in 0..args.runs {
        if r % 2 == 0 {
            lp.push(measure_layerpass(&env, r)?);
            peer.push(measure_ext4(&env, r)?);
        } else {
            peer.push(measure_ext4(&env, r)?);
            lp.push(measure_layerpass(&env, r)?);
        }
        let (l, p) = (lp[r], peer[r]);
        let mut out = std::io::stdout().lock();
        writeln!(out, "round {r}:")?;
        writeln!(out, "  layerpass   {}", line(&l))?;
        writeln!(out, "  ext4 copies {}", line(&p))?;
    }
    let report = report(&tars, args, accel.name(), &lp, &peer)?;
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(())
}

/// A flag SIGINT sets (a second SIGINT ends the process at once), so that a bench stopped
/// with Ctrl-C still stops its VMs and daemon and removes its temporary directories.
fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&flag),
    )
    .context("SIGINT handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&flag))
        .context("SIGINT handler")?;
    Ok(flag)
}

struct Env<'a> {
    /// Set by SIGINT: the waits stop, the guards clean up, the bench fails.
    interrupted: &'a AtomicBool,
    dir: &'a Path,
    base: &'a Path,
    host_bin: &'a Path,
    guest_bin: &'a Path,
    kernel: &'a assets::Kernel,
    image: &'a Path,
    rootfs: &'a Path,
    args: &'a MemoryArgs,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn line(s: &Sample) -> String {
    format!(
        "page cache {:.0} MiB of {:.0} MiB served; backend anon {:.1} MiB; total {:.0} MiB; \
         QEMU anon {:.0} MiB; meminfo Cached-Shmem {:+.0} MiB; read {:.0} MiB per VM in {:.1} s",
        mib(s.served_cache),
        mib(s.served_size),
        mib(s.backend_anon),
        mib(s.total()),
        mib(s.qemu_anon),
        s.meminfo_growth as f64 / MIB as f64,
        mib(s.read),
        s.elapsed.as_secs_f64()
    )
}

/// `dir`: an OCI image layout with the tars as uncompressed layers (hard links, no
/// copies), made once.
fn oci_layout(dir: &Path, tars: &[PathBuf]) -> anyhow::Result<PathBuf> {
    if dir.join("index.json").is_file() {
        return Ok(dir.to_owned());
    }
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)?;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        let hex = sha256_file(tar)?;
        let blob = blobs.join(&hex);
        if !blob.exists() {
            fs::hard_link(tar, &blob)
                .with_context(|| format!("cannot link {} into the layout", tar.display()))?;
        }
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{hex}"),
            "size": fs::metadata(tar)?.len(),
        }));
        diff_ids.push(format!("sha256:{hex}"));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = write_blob(&blobs, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers,
    }))?;
    let manifest_digest = write_blob(&blobs, &manifest)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))?;
    // index.json last: its presence marks a complete layout
    fs::write(dir.join("index.json"), index)?;
    Ok(dir.to_owned())
}

fn write_blob(blobs: &Path, data: &[u8]) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let hex = hex::encode(Sha256::digest(data));
    fs::write(blobs.join(&hex), data)?;
    Ok(format!("sha256:{hex}"))
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// `base/rootfs.ext4`: the image's layers unpacked in order (GNU tar, owners and modes
/// kept; the package tars have no whiteouts) and formatted with `mkfs.ext4 -d`, made once.
fn ext4_rootfs(base: &Path, tars: &[PathBuf], mkfs: &Path) -> anyhow::Result<PathBuf> {
    let img = base.join("rootfs.ext4");
    if img.is_file() {
        return Ok(img);
    }
    let tree = tempfile::tempdir_in(base)?;
    for tar in tars {
        run(Command::new("tar")
            .args(["-x", "-p", "--numeric-owner", "-f"])
            .arg(tar)
            .arg("-C")
            .arg(tree.path()))?;
    }
    let out = run(Command::new("du").args(["-s", "-B1"]).arg(tree.path()))?;
    let used: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du printed no size")?;
    let size = (used + used / 5 + 128 * MIB).div_ceil(MIB) * MIB;
    let part = base.join("rootfs.ext4.part");
    File::create(&part)?.set_len(size)?;
    run(Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            "-d",
        ])
        .arg(tree.path())
        .arg(&part))?;
    fs::rename(&part, &img)?;
    Ok(img)
}

/// Host page cache held by `path`, bytes: its resident pages by `mincore(2)`.
fn resident_bytes(path: &Path) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = usize::try_from(file.metadata()?.len())?;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: sysconf only reads a configuration value.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })?;
    // SAFETY: a fresh private read-only mapping of a file we hold open; nothing else
    // refers to the address range, which is unmapped below before returning.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot map {}", path.display()));
    }
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr..addr+len` is the mapping made above; `vec` has one byte per page of
    // it, as mincore requires. mincore does not fault pages in.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: unmaps exactly the mapping made above; no reference into it exists.
    unsafe { libc::munmap(addr, len) };
    if rc != 0 {
        return Err(err).with_context(|| format!("mincore of {}", path.display()));
    }
    let pages = vec.iter().filter(|&&b| b & 1 == 1).count() as u64;
    Ok((pages * page as u64).min(len as u64))
}

/// Writes back and drops `path`'s pages from the host page cache.
fn evict(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.sync_all()?;
    // SAFETY: advisory call on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    ensure!(rc == 0, "posix_fadvise of {}: error {rc}", path.display());
    Ok(())
}

/// Regular files under `dir`, recursively.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `field` (kB) of `/proc/meminfo`, bytes.
fn meminfo(field: &str) -> anyhow::Result<u64> {
    let text = fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * KIB)
        .with_context(|| format!("no {field} in /proc/meminfo"))
}

fn file_cache() -> anyhow::Result<i64> {
    Ok(i64::try_from(meminfo("Cached")?)? - i64::try_from(meminfo("Shmem")?)?)
}

/// `field` (kB) of `/proc/PID/status`, bytes.
fn status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * KIB)
        .with_context(|| format!("no {field} in {path}"))
}

/// The guest script: read every file below `root` (already mounted), report, then hold.
fn read_script(mount: &str) -> String {
    format!(
        r#"
{mount}
echo "MEM-MOUNTED $r"
n=$(tar -cf - -C "$r" . | wc -c)
echo "MEM-READ-DONE $n"
# hold the VM (and its page cache) until the host has sampled and stops it
sleep 100000
"#
    )
}

/// Boots the VMs, waits until every one has read everything and returns them (still
/// running) with the bytes the first one read. Fails at once, with the console of the VM
/// concerned, when a VM's script fails or its QEMU exits, when the serving daemon exits,
/// or on SIGINT (the guards then stop every VM and the temporary directories go).
fn boot_and_read(
    builders: Vec<VmBuilder>,
    what: &str,
    mut daemon: Option<&mut ChildGuard>,
    interrupted: &AtomicBool,
) -> anyhow::Result<(Vec<VmGuard>, u64, Duration)> {
    let start = Instant::now();
    let mut vms = builders
        .into_iter()
        .map(VmBuilder::spawn)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut read: Vec<Option<u64>> = vec![None; vms.len()];
    while read.iter().any(Option::is_none) {
        ensure!(!interrupted.load(Ordering::Relaxed), "{what}: interrupted");
        if let Some(d) = daemon.as_deref_mut()
            && let Some(status) = d.try_wait()?
        {
            bail!("{what}: the serving daemon exited with {status} while the VMs were reading");
        }
        for (i, vm) in vms.iter_mut().enumerate() {
            if read[i].is_some() {
                continue;
            }
            read[i] = read_done(vm, what)?;
            if read[i].is_none()
                && let Some(status) = vm.try_exit()?
            {
                bail!(
                    "{what}: VM {i} (QEMU) exited with {status} before it read everything:\n{}",
                    vm.console()
                );
            }
        }
        ensure!(
            start.elapsed() < READ_TIMEOUT,
            "{what}: not every VM read everything within {READ_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    let read: Vec<u64> = read.into_iter().flatten().collect();
    let first = read[0];
    ensure!(
        read.iter().all(|&n| n == first),
        "{what}: the VMs read different amounts: {read:?}"
    );
    Ok((vms, first, elapsed))
}

/// The VM's `MEM-READ-DONE N` once it has printed it; fails when its test script failed.
fn read_done(vm: &VmGuard, what: &str) -> anyhow::Result<Option<u64>> {
    let text = vm.console();
    if let Some(n) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("MEM-READ-DONE "))
    {
        return n
            .trim()
            .parse::<u64>()
            .map(Some)
            .with_context(|| format!("{what}: MEM-READ-DONE {n:?}"));
    }
    if text.contains(RESULT_MARKER) {
        bail!("{what}: the guest script failed:\n{text}");
    }
    Ok(None)
}

fn qemu_anon(vms: &[VmGuard]) -> anyhow::Result<u64> {
    vms.iter().map(|vm| status_bytes(vm.pid(), "RssAnon")).sum()
}

/// One `layerpass serve` daemon, N exports of the image, N VMs reading it.
fn measure_layerpass(env: &Env<'_>, round: usize) -> anyhow::Result<Sample> {
    let work = tempfile::Builder::new()
        .prefix("memory-lp-")
        .tempdir_in(env.dir)?;
    let w = work.path();
    let cache = env.base.join("daemon-cache");
    let api = w.join("api.sock");
    let config = w.join("config.toml");
    fs::write(
        &config,
        format!(
            "state_dir = {:?}\ncache_dir = {:?}\nrun_dir = {:?}\napi_socket = {:?}\n\
             export_mode = \"per-layer\"\nupper = \"tmpfs\"\nscratch_size = \"64M\"\nqueues = 1\n",
            w.join("state"),
            cache,
            w.join("run"),
            api
        ),
    )?;
    let log = File::create(w.join("daemon.log"))?;
    let mut daemon = ChildGuard::spawn(
        Command::new(env.host_bin)
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(log),
        "layerpass serve",
    )?;
    let up = Instant::now();
    while UnixStream::connect(&api).is_err() {
        if let Some(status) = daemon.try_wait()? {
            bail!(
                "layerpass serve exited with {status}: {}",
                fs::read_to_string(w.join("daemon.log")).unwrap_or_default()
            );
        }
        ensure!(
            up.elapsed() < Duration::from_secs(30),
            "the daemon did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut builders = Vec::new();
    for i in 0..env.args.vms {
        if i == 0 {
            eprintln!(
                "memory: round {round}: exporting the image {} times (the first export converts it once into {})",
                env.args.vms,
                cache.display()
            );
        }
        let out = run(Command::new(env.host_bin)
            .arg("export")
            .arg("--api")
            .arg(&api)
            .args(["--sandbox", &format!("mem{i}"), "--container", "c"])
            .arg("--image")
            .arg(env.image)
            .args(["--mode", "per-layer", "--upper", "tmpfs:64M", "--json"])
            .stderr(Stdio::inherit()))?;
        let export: Value = serde_json::from_slice(&out.stdout).context("export --json")?;
        let plan = serde_json::to_vec(&export["plan"])?;
        let disks = export["disks"].as_array().context("export without disks")?;
        let initrd = w.join(format!("initrd{i}.gz"));
        let mount = "r=$(/bin/layerpass-guest mount --plan /plans/p.json)";
        Initramfs::standard(env.kernel)?
            .host_file("/bin/layerpass-guest", env.guest_bin, 0o755)
            .file("/plans/p.json", &plan, 0o644)
            .test_script(&read_script(mount))
            .write(&initrd)?;
        let mut b = VmBuilder::new(&format!("memory-lp-{round}-{i}"), env.kernel, &initrd)
            .memory_mib(env.args.memory_mib);
        for d in disks {
            let socket = d["socket"].as_str().context("a disk without socket")?;
            b = b.vhost_user_blk(VhostUserBlk {
                socket: PathBuf::from(socket),
                num_queues: Some(1),
                reconnect_ms: None,
            });
        }
        builders.push(b);
    }
    let served = files_under(&cache)?;
    for f in &served {
        evict(f)?;
    }
    let before = file_cache()?;
    let before_cache: u64 = served
        .iter()
        .map(|f| resident_bytes(f))
        .sum::<anyhow::Result<_>>()?;
    let (vms, read, elapsed) =
        boot_and_read(builders, "layerpass", Some(&mut daemon), env.interrupted)?;
    let served_cache: u64 = served
        .iter()
        .map(|f| resident_bytes(f))
        .sum::<anyhow::Result<_>>()?;
    let sample = Sample {
        served_cache: served_cache.saturating_sub(before_cache),
        served_size: served
            .iter()
            .map(|f| Ok(fs::metadata(f)?.len()))
            .sum::<anyhow::Result<_>>()?,
        backend_anon: status_bytes(daemon.id(), "RssAnon")?,
        qemu_anon: qemu_anon(&vms)?,
        meminfo_growth: file_cache()? - before,
        read,
        elapsed,
    };
    drop(vms);
    for i in 0..env.args.vms {
        run(Command::new(env.host_bin)
            .arg("unexport")
            .arg("--api")
            .arg(&api)
            .args(["--sandbox", &format!("mem{i}"), "--container", "c"]))?;
    }
    daemon.terminate(Duration::from_secs(10))?;
    Ok(sample)
}

/// N copies of the unpacked rootfs as ext4 images, one per VM.
fn measure_ext4(env: &Env<'_>, round: usize) -> anyhow::Result<Sample> {
    let work = tempfile::Builder::new()
        .prefix("memory-ext4-")
        .tempdir_in(env.dir)?;
    let w = work.path();
    let mut builders = Vec::new();
    let mut copies = Vec::new();
    eprintln!(
        "memory: round {round}: copying the ext4 rootfs {} times",
        env.args.vms
    );
    for i in 0..env.args.vms {
        let copy = w.join(format!("rootfs{i}.ext4"));
        fs::copy(env.rootfs, &copy)?;
        let initrd = w.join(format!("initrd{i}.gz"));
        let mount = "r=/rootfs\nmkdir -p $r\nmount -t ext4 -o ro,noload $(lp_disk lp-rootfs) $r";
        Initramfs::standard(env.kernel)?
            .test_script(&read_script(mount))
            .write(&initrd)?;
        builders.push(
            VmBuilder::new(&format!("memory-ext4-{round}-{i}"), env.kernel, &initrd)
                .memory_mib(env.args.memory_mib)
                .disk(&copy, "lp-rootfs"),
        );
        copies.push(copy);
    }
    for c in &copies {
        evict(c)?;
    }
    let before = file_cache()?;
    let before_cache: u64 = copies
        .iter()
        .map(|f| resident_bytes(f))
        .sum::<anyhow::Result<_>>()?;
    let (vms, read, elapsed) = boot_and_read(builders, "ext4 copies", None, env.interrupted)?;
    let served_cache: u64 = copies
        .iter()
        .map(|f| resident_bytes(f))
        .sum::<anyhow::Result<_>>()?;
    let sample = Sample {
        served_cache: served_cache.saturating_sub(before_cache),
        served_size: copies
            .iter()
            .map(|f| Ok(fs::metadata(f)?.len()))
            .sum::<anyhow::Result<_>>()?,
        backend_anon: 0,
        qemu_anon: qemu_anon(&vms)?,
        meminfo_growth: file_cache()? - before,
        read,
        elapsed,
    };
    drop(vms);
    Ok(sample)
}

/// One figure of a sample, bytes.
type Field = fn(&Sample) -> u64;

fn report(
    tars: &[PathBuf],
    args: &MemoryArgs,
    accel: &str,
    lp: &[Sample],
    peer: &[Sample],
) -> anyhow::Result<String> {
    let tar_bytes: u64 = tars
        .iter()
        .map(|t| Ok(fs::metadata(t)?.len()))
        .sum::<anyhow::Result<_>>()?;
    let med = |v: &[Sample], f: Field| -> f64 {
        median_f64(&v.iter().map(|s| mib(f(s))).collect::<Vec<_>>())
    };
    let range = |v: &[Sample], f: Field| -> String {
        let xs: Vec<f64> = v.iter().map(|s| mib(f(s))).collect();
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.0}–{hi:.0}")
    };
    let mut s = String::new();
    writeln!(
        s,
        "host memory: {} VMs ({} MiB, 1 vCPU, {accel}) each reading every file of debian-10 \
         ({} layers, {:.0} MiB of tars, {:.0} MiB read per VM); {} rounds, MiB (range)",
        args.vms,
        args.memory_mib,
        tars.len(),
        mib(tar_bytes),
        mib(lp[0].read),
        lp.len()
    )?;
    writeln!(s, "| | layerpass | ext4 copies | ratio |")?;
    writeln!(s, "|---|---|---|---|")?;
    let rows: [(&str, Field); 4] = [
        ("page cache of the served files", |x| x.served_cache),
        ("serving process RssAnon", |x| x.backend_anon),
        ("**host memory for the layers**", Sample::total),
        ("QEMU RssAnon (sum)", |x| x.qemu_anon),
    ];
    for (name, f) in rows {
        let (a, b) = (med(lp, f), med(peer, f));
        let r = if a > 0.0 && b > 0.0 {
            format!("{:.1}×", ratio(b, a))
        } else {
            "—".to_owned()
        };
        writeln!(
            s,
            "| {name} | {a:.0} ({}) | {b:.0} ({}) | {r} |",
            range(lp, f),
            range(peer, f)
        )?;
    }
    writeln!(
        s,
        "served files: layerpass {:.0} MiB (EROFS blobs + trees, one copy), ext4 {:.0} MiB ({} copies)",
        mib(lp[0].served_size),
        mib(peer[0].served_size),
        args.vms
    )?;
    Ok(s)
}

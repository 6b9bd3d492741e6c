//! `layerpass run` end to end, as a user runs it: the static `layerpass` with the static
//! `layerpass-guest` beside it (found there, not passed), the embedded sample image,
//! Debian's cloud kernel, QEMU. Checked: the command's stdout and stderr, its exit
//! status (0, 3, 127), stdin closed, the image config's Env and WorkingDir, the `--json`
//! report; a byte flipped in a cached layer read as an I/O error in the guest while the
//! rest of the image still reads; in confidential mode, the same layer with its tree
//! re-formatted (a self-consistent disk) refused with `PermissionDenied`; `--index` (index
//! layers on a composite disk, confidential); and nothing left
//! behind — no QEMU, no temporary files, no sockets, no mounts — after success, after a
//! failing command, after a refused layer and after SIGINT during boot.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use layerpass_tests::vm::{
    BOOT_TIMEOUT, ChildGuard, accel, assets, require_vm_tools, static_binary,
};
use serde_json::Value;

/// The static `layerpass` with the static `layerpass-guest` beside it.
fn binaries() -> PathBuf {
    static_binary("layerpass-guest", "layerpass-guest").unwrap();
    static_binary("layerpass", "layerpass").unwrap()
}

/// A run cache of this test's own whose `pkg/` (the unpacked Debian packages) is the
/// tests' shared one, so the kernel is fetched once for all tests.
fn cache(dir: &Path) -> PathBuf {
    let cache = dir.join("cache");
    fs::create_dir_all(&cache).unwrap();
    let shared = assets::asset_dir().join("pkg");
    fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, cache.join("pkg")).unwrap();
    cache
}

struct Runner {
    bin: PathBuf,
    cache: PathBuf,
    tmp: PathBuf,
    accel: &'static str,
}

impl Runner {
    fn new(dir: &Path) -> Self {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        Self {
            bin: binaries(),
            cache: cache(dir),
            tmp,
            accel: accel::detect().unwrap().name(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run")
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--accel", self.accel])
            .args(args)
            .env("TMPDIR", &self.tmp)
            .env_remove("LAYERPASS_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs to the end and checks nothing was left behind.
    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        eprintln!(
            "layerpass run {args:?}: {}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        self.assert_clean();
        out
    }

    /// No temporary files, no process and no mount mentioning them.
    fn assert_clean(&self) {
        let left: Vec<_> = fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        let tmp = self.tmp.to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/mounts").unwrap();
        assert!(!mounts.contains(&tmp), "a mount under {tmp} is left");
        assert!(
            processes_mentioning(&tmp).is_empty(),
            "processes left: {:?}",
            processes_mentioning(&tmp)
        );
    }

    /// The cached EROFS blob of the layer whose diff ID is `diff_id`.
    fn blob(&self, diff_id: &str) -> PathBuf {
        let hex = diff_id.strip_prefix("sha256:").unwrap();
        self.cache
            .join("layers/sha256")
            .join(&hex[..2])
            .join(format!("{hex}.erofs"))
    }
}

/// Command lines of live processes that contain `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmdline) = fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `--json` report: the last line of stderr.
fn report(out: &Output) -> Value {
    let err = text(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no report in {err}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn output_status_stdin_env_workdir_and_report() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Runner::new(dir.path());
    let script = "echo out; echo err >&2; if read x; then echo stdin=open; else echo stdin=closed; fi; \
                  pwd; echo sample=$LAYERPASS_SAMPLE extra=$EXTRA; cat /etc/motd; exit 3";
    let out = r.run(&["--json", "-e", "EXTRA=given", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stdout),
        "out\nstdin=closed\n/home/user\nsample=1 extra=given\nlayerpass: this rootfs is three verified EROFS layers\n"
    );
    assert!(text(&out.stderr).contains("err\n"));
    let rep = report(&out);
    assert_eq!(rep["exit_code"], 3);
    assert_eq!(rep["mode"], "per-layer");
    assert_eq!(rep["upper"], "tmpfs");
    for key in [
        "assets_ms",
        "convert_ms",
        "export_ms",
        "boot_ms",
        "mount_ms",
        "command_ms",
        "total_ms",
    ] {
        assert!(rep["timings"][key].is_u64(), "timings.{key} in {rep}");
    }
    let layers = rep["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{rep}");
    for l in layers {
        assert!(l["diff_id"].as_str().unwrap().starts_with("sha256:"));
        assert!(l["digest"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(l["root_hash"].as_str().unwrap().len(), 64);
        assert!(l["size"].as_u64().unwrap() > 0);
        assert!(l["shared"].is_boolean());
    }
    assert!(
        rep["timings"]["total_ms"].as_u64().unwrap() >= rep["timings"]["boot_ms"].as_u64().unwrap()
    );

    // The image's Cmd when no command is given; 127 for a missing command.
    let out = r.run(&["--mode", "composite"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("ID=layerpass-sample\n"),
        "{}",
        text(&out.stdout)
    );
    let out = r.run(&["--", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("no-such-command: command not found"));
}

#[test]
fn tampered_layers_are_caught_in_the_guest() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Runner::new(dir.path());
    let read = "cat /etc/motd; sha256sum /usr/share/sample/data.bin";
    let out = r.run(&["--confidential", "--json", "--", "sh", "-c", read]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let good = text(&out.stdout);
    assert!(good.contains("data.bin"));
    let rep = report(&out);
    assert_eq!(rep["event_log"].as_array().unwrap().len(), 3, "{rep}");
    assert!(text(&out.stderr).contains("==> event log: "));
    // The layer holding data.bin: layer 2 of 3 (the middle one, top first).
    let diff_id = rep["layers"][1]["diff_id"].as_str().unwrap().to_owned();
    let blob = r.blob(&diff_id);
    let sidecar: Value =
        serde_json::from_slice(&fs::read(blob.with_extension("erofs.dmverity")).unwrap()).unwrap();
    let data_end = sidecar["hashoffset"].as_u64().unwrap();

    // One byte of file data flipped on the host: the file reads as an I/O error, the rest
    // of the image still reads.
    let mut bytes = fs::read(&blob).unwrap();
    let at = usize::try_from(data_end / 2).unwrap();
    bytes[at] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let out = r.run(&["--", "sh", "-c", read]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("three verified EROFS layers"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("Input/output error"),
        "{}",
        text(&out.stderr)
    );

    // The tree re-formatted over the tampered data: a self-consistent disk the host's own
    // checks accept. Confidential mode refuses it: its root hash is not the one computed
    // from the image's tar.
    let f = fs::OpenOptions::new().write(true).open(&blob).unwrap();
    f.set_len(data_end).unwrap();
    drop(f);
    let status = Command::new(&r.bin)
        .args(["verity", "format"])
        .arg(&blob)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let out = r.run(&["--confidential", "--", "sh", "-c", read]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("not in the reference values"),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty());
}

/// `--index`: zero-copy index layers (the sample's gzip layers decompressed once into the
/// cache, metadata over each tar) on one composite disk with a 512-byte GPT, verified at
/// 512-byte blocks, in confidential mode: the reference values computed from the image's
/// tars are the index layers' root hashes. The file reads whole and equals the tar's.
#[test]
fn index_layers_composite_and_confidential() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Runner::new(dir.path());
    let read = "cat /etc/motd; sha256sum /usr/share/sample/data.bin";
    let out = r.run(&[
        "--index",
        "--confidential",
        "--mode",
        "composite",
        "--json",
        "--",
        "sh",
        "-c",
        read,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rep = report(&out);
    assert_eq!(rep["mode"], "composite");
    assert_eq!(rep["event_log"].as_array().unwrap().len(), 3, "{rep}");
    // only index layers in the cache: metadata, tree, sidecar and the decompressed tar
    assert!(!r.cache.join("layers").exists());
    let mut data_sha = None;
    for l in rep["layers"].as_array().unwrap() {
        let hex = l["diff_id"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let meta = r
            .cache
            .join("index-layers/sha256")
            .join(&hex[..2])
            .join(format!("{hex}.erofs"));
        let sidecar: Value =
            serde_json::from_slice(&fs::read(meta.with_extension("erofs.dmverity")).unwrap())
                .unwrap();
        assert_eq!(sidecar["roothash"], l["root_hash"], "{rep}");
        let tar = fs::File::open(meta.with_extension("erofs.tar")).unwrap();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().ends_with("usr/share/sample/data.bin") && e.size() > 0 {
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                std::io::copy(&mut e, &mut h).unwrap();
                data_sha = Some(hex::encode(sha2::Digest::finalize(h)));
            }
        }
    }
    let data_sha = data_sha.expect("data.bin in a layer tar");
    assert_eq!(
        text(&out.stdout),
        format!(
            "layerpass: this rootfs is three verified EROFS layers\n{data_sha}  /usr/share/sample/data.bin\n"
        )
    );
}

#[test]
fn sigint_during_boot_leaves_nothing() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Runner::new(dir.path());
    let log = dir.path().join("stderr");
    let mut child = ChildGuard::spawn(
        r.command(&["--", "sleep", "1000"])
            .stderr(fs::File::create(&log).unwrap()),
        "layerpass run",
    )
    .unwrap();
    let start = Instant::now();
    while !fs::read_to_string(&log).unwrap().contains("booting the VM") {
        assert!(
            start.elapsed() < BOOT_TIMEOUT,
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !processes_mentioning(&r.tmp.to_string_lossy()).is_empty(),
        "QEMU should be running"
    );
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our child; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("layerpass run did not stop");
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    r.assert_clean();
}

#[test]
fn through_a_running_daemon() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Runner::new(dir.path());
    let d = dir.path();
    let config = d.join("config.toml");
    fs::write(
        &config,
        format!(
            "state_dir = {:?}\nrun_dir = {:?}\nqueues = 1\n",
            d.join("state"),
            d.join("run")
        ),
    )
    .unwrap();
    let api = d.join("run/api.sock");
    let _daemon = ChildGuard::spawn(
        Command::new(&r.bin)
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(fs::File::create(d.join("daemon.log")).unwrap()),
        "layerpass serve",
    )
    .unwrap();
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&api).is_err() {
        assert!(start.elapsed() < BOOT_TIMEOUT, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let api_arg = api.to_string_lossy().into_owned();
    let out = r.run(&["--daemon", &api_arg, "--json", "--", "cat", "/etc/motd"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "layerpass: this rootfs is three verified EROFS layers\n"
    );
    let rep = report(&out);
    for l in rep["layers"].as_array().unwrap() {
        assert_eq!(l["root_hash"].as_str().unwrap().len(), 64, "{rep}");
        assert!(l["size"].is_null() && l["shared"].is_null(), "{rep}");
    }
    // The daemon converted into its own cache, and the export is gone.
    assert!(d.join("state/layers").is_dir());
    let list = Command::new(&r.bin)
        .args(["list", "--api"])
        .arg(&api)
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(
        text(&list.stdout).trim().is_empty(),
        "{}",
        text(&list.stdout)
    );
    let sockets: Vec<_> = fs::read_dir(d.join("run/sockets")).unwrap().collect();
    assert!(sockets.is_empty(), "{sockets:?}");
}

/// Debian's cloud kernel without its modules has no EROFS, overlayfs or dm-verity: the
/// run fails with one error naming them.
#[test]
fn a_kernel_without_what_layerpass_needs_is_named() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Runner::new(dir.path());
    let kernel = assets::cloud_kernel().unwrap();
    let vmlinuz = kernel.vmlinuz.to_string_lossy().into_owned();
    let out = r.run(&["--kernel", &vmlinuz, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("lacks erofs overlay dm-verity"), "{err}");
}

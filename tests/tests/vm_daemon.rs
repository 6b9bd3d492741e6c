//! The daemon end to end, in one QEMU guest (TCG, Debian cloud kernel):
//! - a containerd-shaped snapshotter root: three layers made the way containerd's differ
//!   makes them (`mkfs.erofs --tar=f` from erofs-utils ≥ 1.8, containerd's verity layout
//!   with its `.dmverity` sidecar) and two made by layerpass's converter;
//! - `layerpass serve` with the Kata vhost-user store on; `layerpass export --guest
//!   serial:<port>` for container `a` (block mode: containerd's `mkfs/ext4` rwlayer.img,
//!   per-layer disks) and container `b` (composite disk, tmpfs upper);
//! - while each export waits for the guest, the test resolves every disk's socket from its
//!   device node exactly as Kata's Go runtime does and hot-plugs it into the running QEMU
//!   through QMP (`chardev-add` + `device_add vhost-user-blk-pci`, reconnecting);
//! - the guest agent mounts the plans the daemon delivered; the merged views are checked;
//! - the guest reads a 24 MiB file in a loop while the daemon is killed with SIGKILL and
//!   started again: every read completes with the right checksum, no I/O error, and `list`
//!   shows the same exports;
//! - `unexport` unmounts in the guest and leaves no socket, node, state row or serving
//!   thread.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use layerpass_test_support::kata::resolve_like_kata;
use layerpass_tests::snapshots::{
    Maker, block_mode_mounts, layer_tar, make_layer, overlay_mounts, snapshot_dir,
};
use layerpass_tests::tools::pseudo_random;
use layerpass_tests::vm::process::ChildGuard;
use layerpass_tests::vm::{
    BOOT_TIMEOUT, Initramfs, TestImage, VhostUserBlk, VmBuilder, VmGuard, assets, require_vm_tools,
    static_binary,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const PORT: &str = "layerpass.0";
const BIG: usize = 24 << 20;
const READS: usize = 8;

const SCRIPT: &str = r#"
dump() { sed 's/^/AGENT: /' /tmp/agent.log; }
lp_port layerpass.0 >/dev/null
layerpass-guest -v serve --transport virtio-serial --device layerpass.0 --device-timeout 300 \
  >/tmp/agent.log 2>&1 &
agent=$!
echo GUEST-AGENT-UP
a=/run/layerpass/rootfs/a
b=/run/layerpass/rootfs/b
if ! lp_wait 450 grep -q " $a overlay " /proc/mounts; then dump; exit 1; fi
if ! lp_wait 450 grep -q " $b overlay " /proc/mounts; then dump; exit 1; fi
echo "GUEST-FILE a hello $(cat $a/app/hello)"
echo "GUEST-FILE a mid $(cat $a/app/mid)"
echo "GUEST-FILE a base $(cat $a/base.txt)"
if [ -e $a/app/gone ]; then echo "GUEST-FILE a gone present"; else echo "GUEST-FILE a gone absent"; fi
echo written > $a/new.txt
echo "GUEST-FILE a new $(cat $a/new.txt)"
echo "GUEST-FILE b $(cat $b/c2/a) $(cat $b/c2/b)"
echo "GUEST-MOUNTS dm=$(ls /sys/block | grep -c '^dm-') ext4=$(grep -c ' ext4 ' /proc/mounts)"
echo GUEST-MOUNTED
i=0
while [ $i -lt @READS@ ]; do
  echo 3 > /proc/sys/vm/drop_caches
  s=$(sha256sum $a/big.bin 2>&1 | cut -d' ' -f1)
  echo "GUEST-SUM $i $s"
  i=$((i + 1))
done
# dm-verity's own start-up lines ("verity: sha256 using ...") are not errors
bad='i/o error|verity.*(corrupt|error|fail)|blk_update_request|buffer i/o'
dmesg | grep -iE "$bad" | sed 's/^/GUEST-DMESG /'
echo "GUEST-IOERR $(dmesg | grep -ciE "$bad")"
echo GUEST-READS-DONE
# shorter than the host's wait for the result, so a failure shows the agent's log
if ! lp_wait 300 sh -c '! grep -q /run/layerpass/rootfs /proc/mounts'; then dump; exit 1; fi
# the agent removes the dm devices after the overlay is gone; give it 60 s
lp_wait 60 sh -c '[ "$(ls /sys/block | grep -c "^dm-")" = 0 ]' || true
echo "GUEST-UNMOUNTED dm=$(ls /sys/block | grep -c '^dm-') mounts=$(grep -c /run/layerpass/rootfs /proc/mounts)"
kill $agent
wait $agent
echo "GUEST-AGENT-EXIT $?"
"#;

/// Prints the daemons' logs when the test fails (they live in its temporary directory).
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            if let Ok(text) = fs::read_to_string(path) {
                eprintln!("==== {} ====\n{text}==== end ====", path.display());
            }
        }
    }
}

struct Daemon {
    bin: PathBuf,
    config: PathBuf,
    api: PathBuf,
    dir: PathBuf,
}

impl Daemon {
    fn start(&self, log: &str) -> ChildGuard {
        let log = fs::File::create(self.dir.join(log)).unwrap();
        let child = ChildGuard::spawn(
            Command::new(&self.bin)
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("LAYERPASS_LOG", "info")
                .stderr(log),
            "layerpass serve",
        )
        .unwrap();
        let start = Instant::now();
        while UnixStream::connect(&self.api).is_err() {
            assert!(start.elapsed() < BOOT_TIMEOUT, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).arg("--api").arg(&self.api);
        c
    }

    fn list(&self) -> Value {
        let out = self.cli(&["list", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Runs `layerpass export ... --guest serial:<port> --json` and, while it waits for the
/// guest, hot-plugs each of the `disks` new disks (found through the Kata store's nodes)
/// into the VM; returns the export's JSON.
fn export_and_attach(
    daemon: &Daemon,
    vm: &mut VmGuard,
    store: &Path,
    args: &[&str],
    disks: usize,
    attached: &mut Vec<PathBuf>,
) -> Value {
    let out_path = daemon.dir.join(format!("export-{}.json", attached.len()));
    let port = vm.port_path(PORT);
    let guest = format!("serial:{}", port.display());
    let mut cmd = daemon.cli(&["export"]);
    cmd.args(args)
        .args(["--guest", &guest, "--json"])
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit());
    let mut export = ChildGuard::spawn(&mut cmd, "layerpass export").unwrap();
    let start = Instant::now();
    let mut new = Vec::new();
    while new.len() < disks {
        assert!(start.elapsed() < BOOT_TIMEOUT, "the disks never appeared");
        if let Some(status) = export.try_wait().unwrap() {
            panic!("export ended before its disks were attached: {status}");
        }
        new.clear();
        for e in fs::read_dir(store.join("block/devices")).unwrap() {
            let m = fs::metadata(e.unwrap().path()).unwrap();
            if let Some(sock) = resolve_like_kata(store, m.rdev())
                && !attached.contains(&sock)
            {
                new.push(sock);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    new.sort();
    for sock in new {
        vm.hotplug_vhost_user_blk(&VhostUserBlk {
            socket: sock.clone(),
            num_queues: Some(1),
            reconnect_ms: Some(300),
        })
        .unwrap();
        attached.push(sock);
    }
    let status = export.wait_timeout(BOOT_TIMEOUT).unwrap();
    assert_eq!(status.map(|s| s.success()), Some(true), "export failed");
    serde_json::from_slice(&fs::read(&out_path).unwrap()).unwrap()
}

fn vhost_threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("vhost"))
        .count()
}

#[test]
fn daemon_exports_to_a_running_guest_survives_kill_9_and_unexports_cleanly() {
    if !require_vm_tools() {
        return;
    }
    let Some(erofs) = layerpass_test_support::erofs_utils::require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host_bin = static_binary("layerpass", "layerpass").unwrap();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();

    // The snapshotter root. containerd's differ: 1 (base), 2, 3 (top); our converter: 11, 12.
    let root = d.join("snapshotter");
    let big = pseudo_random(BIG, 7);
    let big_sum = hex::encode(Sha256::digest(&big));
    let mkfs = Maker::Mkfs(erofs);
    let t1 = layer_tar(
        d,
        "base",
        &[
            ("base.txt", b"base"),
            ("app/gone", b"deleted above"),
            ("big.bin", &big),
        ],
    )
    .unwrap();
    let t2 = layer_tar(
        d,
        "mid",
        &[
            ("app/hello", b"hello from the middle layer"),
            ("app/mid", b"middle"),
            ("app/.wh.gone", b""),
        ],
    )
    .unwrap();
    let t3 = layer_tar(d, "top", &[("app/hello", b"hello from the top layer")]).unwrap();
    let mut roots = Vec::new();
    for (id, tar) in [(1, &t1), (2, &t2), (3, &t3)] {
        roots.push(make_layer(&root, id, tar, &mkfs).unwrap().1);
    }
    for (id, name, text) in [(11, "c2a", "alpha"), (12, "c2b", "beta")] {
        let file = if id == 11 { "c2/a" } else { "c2/b" };
        let tar = layer_tar(d, name, &[(file, text.as_bytes())]).unwrap();
        make_layer(&root, id, &tar, &Maker::Converter).unwrap();
    }
    fs::create_dir_all(snapshot_dir(&root, 7)).unwrap();
    let a_mounts = d.join("a.json");
    fs::write(
        &a_mounts,
        serde_json::to_vec(&block_mode_mounts(&root, 7, &[3, 2, 1], 64 << 20)).unwrap(),
    )
    .unwrap();
    let b_mounts = d.join("b.json");
    fs::write(
        &b_mounts,
        serde_json::to_vec(&overlay_mounts(&root, 8, &[12, 11])).unwrap(),
    )
    .unwrap();

    // The daemon, with the Kata store.
    let store = d.join("kata");
    let config = d.join("config.toml");
    fs::write(
        &config,
        format!(
            "state_dir = {:?}\nrun_dir = {:?}\nkata_vhost_user_store = {:?}\nqueues = 1\nscratch_size = \"32M\"\n",
            d.join("state"),
            d.join("run"),
            store
        ),
    )
    .unwrap();
    let daemon = Daemon {
        bin: host_bin,
        config,
        api: d.join("run/api.sock"),
        dir: d.to_owned(),
    };
    let _logs = LogsOnFailure(vec![d.join("daemon-1.log"), d.join("daemon-2.log")]);
    let mut first = daemon.start("daemon-1.log");

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = d.join("initrd.gz");
    Initramfs::standard(&kernel)
        .unwrap()
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .test_script(&SCRIPT.replace("@READS@", &READS.to_string()))
        .write(&initrd)
        .unwrap();
    let mut vm = VmBuilder::new("daemon", &kernel, &initrd)
        .serial_port(PORT)
        .hotplug_ports(5)
        .memory_mib(512)
        .spawn()
        .unwrap();
    vm.wait_for("GUEST-AGENT-UP", BOOT_TIMEOUT).unwrap();

    let mut attached = Vec::new();
    let a = export_and_attach(
        &daemon,
        &mut vm,
        &store,
        &[
            "--sandbox",
            "vm1",
            "--container",
            "a",
            "--mounts",
            a_mounts.to_str().unwrap(),
            "--mode",
            "per-layer",
        ],
        4,
        &mut attached,
    );
    assert_eq!(a["disks"].as_array().unwrap().len(), 4);
    assert_eq!(a["guest"]["rootfs"], "/run/layerpass/rootfs/a");
    // The plan carries the sidecars' root hashes, top first, and the block-mode upper.
    let plan_roots: Vec<String> = a["plan"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let b64 = l["verity"]["rootHash"].as_str().unwrap();
            hex::encode(base64_decode(b64))
        })
        .collect();
    assert_eq!(
        plan_roots,
        [roots[2].clone(), roots[1].clone(), roots[0].clone()]
    );
    assert!(a["plan"]["upper"]["disk"].is_object(), "{}", a["plan"]);
    let b = export_and_attach(
        &daemon,
        &mut vm,
        &store,
        &[
            "--sandbox",
            "vm1",
            "--container",
            "b",
            "--mounts",
            b_mounts.to_str().unwrap(),
            "--mode",
            "composite",
            "--upper",
            "tmpfs:16M",
        ],
        1,
        &mut attached,
    );
    assert_eq!(b["disks"].as_array().unwrap().len(), 1);
    assert_eq!(b["guest"]["rootfs"], "/run/layerpass/rootfs/b");

    vm.wait_for("GUEST-MOUNTED", BOOT_TIMEOUT).unwrap();
    assert_eq!(
        vm.lines_with("GUEST-FILE "),
        [
            "a hello hello from the top layer",
            "a mid middle",
            "a base base",
            "a gone absent",
            "a new written",
            "b alpha beta",
        ]
    );
    // a: three verity devices, b: two; a's upper is containerd's ext4 rwlayer.img.
    assert_eq!(vm.lines_with("GUEST-MOUNTS "), ["dm=5 ext4=1"]);
    let listed = daemon.list();

    // SIGKILL while the guest reads; the second daemon serves the same sockets.
    vm.wait_for("GUEST-SUM 1 ", BOOT_TIMEOUT).unwrap();
    first.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let second = daemon.start("daemon-2.log");
    // The restart came while the guest was still reading.
    let at_restart = vm.lines_with("GUEST-SUM ").len();
    assert!(
        at_restart < READS,
        "all {READS} reads were over before the restart"
    );
    vm.wait_for("GUEST-READS-DONE", BOOT_TIMEOUT).unwrap();
    let sums = vm.lines_with("GUEST-SUM ");
    assert_eq!(sums.len(), READS, "{sums:?}");
    for (i, line) in sums.iter().enumerate() {
        assert_eq!(line, &format!("{i} {big_sum}"), "read {i}");
    }
    assert_eq!(vm.lines_with("GUEST-IOERR "), ["0"]);
    assert_eq!(daemon.list(), listed, "the same exports after the restart");
    let status = daemon.cli(&["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["resumed"], "2", "{status}");
    // Every disk of the daemon on one engine: a control thread and the queue workers, as
    // many as Status says, with the guest's disks connected again and their queues running.
    let threads = vhost_threads(second.id());
    assert!(threads >= 2, "{threads} vhost threads");
    assert_eq!(
        status["vhost_threads"].as_u64(),
        Some(threads as u64),
        "{status}"
    );
    let count = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    assert!(count(&status["connected_disks"]) >= 1, "{status}");
    assert!(count(&status["running_queues"]) >= 1, "{status}");

    for c in ["a", "b"] {
        let out = daemon
            .cli(&["unexport", "--sandbox", "vm1", "--container", c])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    vm.wait_result(BOOT_TIMEOUT).unwrap();
    assert_eq!(vm.lines_with("GUEST-UNMOUNTED "), ["dm=0 mounts=0"]);
    assert_eq!(vm.lines_with("GUEST-AGENT-EXIT "), ["0"]);
    assert_eq!(daemon.list(), serde_json::json!({"sandboxes": []}));
    for sub in ["block/sockets", "block/devices"] {
        let left: Vec<_> = fs::read_dir(store.join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
    let status = daemon.cli(&["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (
            count(&status["disks"]),
            count(&status["connected_disks"]),
            count(&status["running_queues"])
        ),
        (0, 0, 0),
        "{status}"
    );
    assert_eq!(
        vhost_threads(second.id()),
        threads,
        "the engine's threads neither grow nor go with the disks"
    );
    assert!(
        snapshot_dir(&root, 7).join("rwlayer.img").exists(),
        "containerd's rwlayer.img stays"
    );
    drop(second);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

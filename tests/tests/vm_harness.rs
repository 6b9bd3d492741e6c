//! Self-test of the QEMU guest harness: Debian's cloud kernel boots with the harness
//! initramfs, loads the modules, mounts an EROFS image made on the host from a plain
//! virtio disk and from a vhost-user-blk device (served by qemu-storage-daemon), stacks
//! it with overlayfs, shows device-mapper, echoes a line over virtio-serial, and reads a
//! virtio-blk disk and a vhost-user-blk device hot-plugged through QMP.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use layerpass_tests::tools::{pseudo_random, require_tool, run};
use layerpass_tests::vm::{
    self, BOOT_TIMEOUT, BOOTED_MARKER, ChildGuard, Initramfs, TestImage, VhostUserBlk, VmBuilder,
    assets,
};
use sha2::{Digest, Sha256};

const PORT: &str = "layerpass.0";

/// The guest's part. `set -e`: any failing command fails the test.
const GUEST_SCRIPT: &str = r#"
for d in /sys/block/vd*; do echo "GUEST-DISK ${d##*/} $(cat "$d/serial")"; done
plain=$(lp_disk layer0)
vub=$(lp_disk vhost_user_blk)
mkdir -p /mnt/plain /mnt/vub /mnt/merged /tmp/upper /tmp/work
mount -t erofs -o ro "$plain" /mnt/plain
mount -t erofs -o ro "$vub" /mnt/vub
echo "GUEST-SHA256-PLAIN $(sha256sum /mnt/plain/sub/data.bin)"
echo "GUEST-SHA256-VUB $(sha256sum /mnt/vub/sub/data.bin)"
mount -t overlay overlay -o lowerdir=/mnt/plain,upperdir=/tmp/upper,workdir=/tmp/work /mnt/merged
echo changed > /mnt/merged/hello.txt
echo "GUEST-OVERLAY $(cat /mnt/merged/hello.txt) $(cat /mnt/plain/hello.txt)"
grep -q ' device-mapper$' /proc/misc
lp_wait 10 test -c /dev/mapper/control
grep -q '^dm_verity ' /proc/modules
echo "GUEST-DM-OK"
port=$(lp_port layerpass.0)
read -r line < "$port"
echo "guest-echo:$line" > "$port"
echo "GUEST-SERIAL-DONE"
hot=$(lp_disk hot0 300)
mkdir -p /mnt/hot
mount -t erofs -o ro "$hot" /mnt/hot
echo "GUEST-SHA256-HOT $(sha256sum /mnt/hot/sub/data.bin)"
two_vub() { [ "$(grep -lx vhost_user_blk /sys/block/vd*/serial | wc -l)" -ge 2 ]; }
lp_wait 300 two_vub
for d in /sys/block/vd*; do
  if [ "$(cat "$d/serial")" = vhost_user_blk ] && [ "/dev/${d##*/}" != "$vub" ]; then hotvub="/dev/${d##*/}"; fi
done
mkdir -p /mnt/hotvub
mount -t erofs -o ro "$hotvub" /mnt/hotvub
echo "GUEST-SHA256-HOTVUB $(sha256sum /mnt/hotvub/sub/data.bin)"
rc=0
/bin/layerpass-guest --help >/dev/null 2>&1 || rc=$?
echo "GUEST-STATIC-BINARY-RC $rc"
"#;

/// Deterministic pseudo-random bytes (xorshift).
fn pattern(len: usize) -> Vec<u8> {
    pseudo_random(len, 1)
}

fn make_erofs(mkfs: &Path, dir: &Path) -> (std::path::PathBuf, String) {
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("hello.txt"), "hello from the host\n").unwrap();
    let data = pattern(300 * 1024 + 123);
    fs::write(src.join("sub/data.bin"), &data).unwrap();
    let image = dir.join("layer.erofs");
    run(Command::new(mkfs).arg(&image).arg(&src)).unwrap();
    (image, hex::encode(Sha256::digest(&data)))
}

/// qemu-storage-daemon exporting `image` read-only over vhost-user-blk on each socket.
fn storage_daemon(qsd: &Path, image: &Path, socks: &[&Path]) -> ChildGuard {
    let mut cmd = Command::new(qsd);
    cmd.arg("--blockdev").arg(format!(
        "driver=file,filename={},node-name=n0,read-only=on",
        image.display()
    ));
    for (i, sock) in socks.iter().enumerate() {
        cmd.arg("--export").arg(format!(
            "type=vhost-user-blk,id=e{i},node-name=n0,addr.type=unix,addr.path={},writable=off,num-queues=1",
            sock.display()
        ));
    }
    let mut daemon = ChildGuard::spawn(&mut cmd, "qemu-storage-daemon").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socks.iter().all(|s| s.exists()) {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "qemu-storage-daemon exited before listening on {socks:?}"
        );
        assert!(
            Instant::now() < deadline,
            "qemu-storage-daemon never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

#[test]
fn guest_boots_mounts_erofs_and_talks_over_virtio_serial() {
    if !vm::require_vm_tools() {
        return;
    }
    let (Some(mkfs), Some(qsd)) = (
        require_tool("mkfs.erofs", "erofs-utils"),
        require_tool("qemu-storage-daemon", "qemu-system-common"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (image, host_sha) = make_erofs(&mkfs, dir.path());

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = dir.path().join("initrd.gz");
    let agent = vm::static_binary("layerpass-guest", "layerpass-guest").unwrap();
    let mut initramfs = Initramfs::standard(&kernel).unwrap();
    initramfs
        .host_file("/bin/layerpass-guest", &agent, 0o755)
        .test_script(GUEST_SCRIPT)
        .write(&initrd)
        .unwrap();

    let vub_sock = dir.path().join("vub.sock");
    let hot_vub_sock = dir.path().join("vub-hot.sock");
    let _daemon = storage_daemon(&qsd, &image, &[&vub_sock, &hot_vub_sock]);

    let started = Instant::now();
    let mut vm = VmBuilder::new("vm_harness", &kernel, &initrd)
        .disk(&image, "layer0")
        .vhost_user_blk(VhostUserBlk {
            socket: vub_sock,
            num_queues: Some(1),
            reconnect_ms: Some(500),
        })
        .serial_port(PORT)
        .hotplug_ports(2)
        .spawn()
        .unwrap();

    vm.wait_for(BOOTED_MARKER, BOOT_TIMEOUT).unwrap();
    let booted = started.elapsed();
    let first_disk = vm.wait_line("GUEST-DISK ", BOOT_TIMEOUT).unwrap();
    assert!(
        ["vda layer0", "vda vhost_user_blk"].contains(&first_disk.as_str()),
        "{first_disk:?}"
    );

    // Host → guest → host over virtio-serial.
    let stream = vm.connect_port(PORT, Duration::from_secs(30)).unwrap();
    stream.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
    let token = format!("ping-{}", std::process::id());
    (&stream)
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    assert_eq!(reply.trim_end(), format!("guest-echo:{token}"));

    // A disk hot-plugged through QMP after the guest is up (it waits for serial hot0).
    vm.hotplug_disk(&image, "hot0", true).unwrap();
    vm.hotplug_vhost_user_blk(&VhostUserBlk {
        socket: hot_vub_sock,
        num_queues: Some(1),
        reconnect_ms: None,
    })
    .unwrap();

    vm.wait_result(BOOT_TIMEOUT).unwrap();
    let status = vm.wait_exit(Duration::from_secs(60)).unwrap();
    eprintln!(
        "vm_harness: {:?} guest booted in {:.1} s, ran its test in {:.1} s (QEMU exit {status})",
        vm.accel(),
        booted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let sha = |prefix: &str| {
        let lines = vm.lines_with(prefix);
        assert_eq!(lines.len(), 1, "one {prefix} line expected: {lines:?}");
        lines[0].split_whitespace().next().unwrap().to_owned()
    };
    assert_eq!(sha("GUEST-SHA256-PLAIN "), host_sha);
    assert_eq!(sha("GUEST-SHA256-VUB "), host_sha);
    assert_eq!(sha("GUEST-SHA256-HOT "), host_sha);
    assert_eq!(sha("GUEST-SHA256-HOTVUB "), host_sha);
    assert_eq!(
        vm.lines_with("GUEST-OVERLAY "),
        ["changed hello from the host"]
    );
    assert_eq!(vm.lines_with("GUEST-DM-OK"), [""]);
    assert_eq!(vm.lines_with("GUEST-SERIAL-DONE"), [""]);
    assert!(
        !vm.console().contains("LAYERPASS-INSMOD-FAILED"),
        "a module failed to load"
    );
    // The static binary ran (whatever it answered): 126/127 would mean it could not exec.
    let rc = vm.lines_with("GUEST-STATIC-BINARY-RC ");
    assert_eq!(rc.len(), 1, "{rc:?}");
    assert!(
        !["126", "127"].contains(&rc[0].as_str()),
        "exec failed: {rc:?}"
    );
}

/// The harness itself must be able to fail: a failing guest command fails the result, and
/// dropping a guard kills a guest that would never stop.
#[test]
fn failing_guest_is_reported_and_dropped_vm_is_killed() {
    if !vm::require_vm_tools() {
        return;
    }
    let kernel = assets::cloud_kernel().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let failing = dir.path().join("failing.gz");
    Initramfs::standard(&kernel)
        .unwrap()
        .test_script("echo GUEST-BEFORE\nfalse\necho GUEST-NOT-REACHED\n")
        .write(&failing)
        .unwrap();
    let mut vm = VmBuilder::new("vm_harness_failing", &kernel, &failing)
        .spawn()
        .unwrap();
    let err = vm.wait_result(BOOT_TIMEOUT).unwrap_err();
    assert!(format!("{err:#}").contains("FAIL (exit 1)"), "{err:#}");
    assert_eq!(vm.lines_with("GUEST-BEFORE"), [""]);
    assert!(vm.lines_with("GUEST-NOT-REACHED").is_empty());
    assert_eq!(vm.lines_with("---- guest kernel log ----").len(), 1);
    drop(vm);

    let sleeping = dir.path().join("sleeping.gz");
    Initramfs::standard(&kernel)
        .unwrap()
        .test_script("echo GUEST-SLEEPING\nsleep 100000\n")
        .write(&sleeping)
        .unwrap();
    let mut vm = VmBuilder::new("vm_harness_sleeping", &kernel, &sleeping)
        .spawn()
        .unwrap();
    vm.wait_for("GUEST-SLEEPING", BOOT_TIMEOUT).unwrap();
    let proc_dir = Path::new("/proc").join(vm.pid().to_string());
    assert!(proc_dir.exists());
    drop(vm);
    assert!(!proc_dir.exists(), "QEMU outlived its guard");
}

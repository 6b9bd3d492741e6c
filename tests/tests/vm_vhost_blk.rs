//! The vhost-user-blk backend under a real Linux guest (QEMU, Debian cloud kernel): a layer
//! disk (EROFS with its dm-verity tree appended) read whole and mounted, a composite disk
//! whose GPT partitions the guest kernel finds by name, a scratch disk written and flushed,
//! and a layer backend killed with SIGKILL and restarted: the guest reads the layer disk
//! again only once the host says the new backend is up, and the new backend's log shows it
//! accepted QEMU's reconnection and served those reads.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerpass::verity::{FormatOptions, format_file};
use layerpass_tests::tools::{require_tool, run};
use layerpass_tests::vm::{
    BOOT_TIMEOUT, ChildGuard, Initramfs, TestImage, VhostUserBlk, VmBuilder, assets,
    require_vm_tools, serve_blk, serve_blk_logged, static_binary,
};
use sha2::{Digest, Sha256};

fn sha_padded(path: &Path) -> String {
    let mut data = fs::read(path).unwrap();
    data.resize(data.len().div_ceil(4096) * 4096, 0);
    hex::encode(Sha256::digest(&data))
}

/// The virtio-serial port on which the host tells the guest that the layer backend has been
/// restarted.
const RESTART_PORT: &str = "lp-restart";
/// Whole-disk reads of the layer disk after the restart (`AFTER` lines in the script).
const READS_AFTER_RESTART: u64 = 3;

const SCRIPT: &str = r#"
d=$(lp_disk lp-layer)
echo "SUM layer $(sha256sum < "$d" | cut -d' ' -f1)"
mkdir -p /mnt/l
mount -t erofs -o ro "$d" /mnt/l
echo "FILE $(cat /mnt/l/hello.txt)"
umount /mnt/l
c=$(lp_disk lp-composite)
n=${c#/dev/}
lp_wait 10 test -b "/dev/${n}3"
for p in /sys/block/$n/$n*; do
  part=${p##*/}
  name=$(grep PARTNAME "$p/uevent" | cut -d= -f2)
  echo "PART $part $name $(sha256sum < "/dev/$part" | cut -d' ' -f1)"
done
s=$(lp_disk lp-scratch)
mkdir -p /mnt/s
mount -t ext4 "$s" /mnt/s
echo "EXT4 $(cat /sys/block/${s#/dev/}/queue/logical_block_size)"
cp /payload /mnt/s/payload
umount /mnt/s
mount -t ext4 "$s" /mnt/s
cmp /payload /mnt/s/payload
umount /mnt/s
dd if=/payload of="$s" bs=4096 seek=16300 conv=fsync 2>/dev/null
echo WROTE
# Whole-disk reads with O_DIRECT in 4 KiB blocks: one request per block, none served from
# the page cache.
direct_sum() {
  dd if="$1" iflag=direct bs=4096 2>/dev/null | sha256sum | cut -d' ' -f1
}
echo "BEFORE $(direct_sum "$d")"
go=$(lp_port lp-restart)
echo RESTART-READY
read -r line < "$go"
[ "$line" = "backend restarted" ]
i=0
while [ $i -lt 3 ]; do
  echo "AFTER $i $(direct_sum "$d")"
  i=$((i + 1))
done
"#;

#[test]
fn guest_reads_layer_composite_and_scratch_disks_and_survives_a_backend_restart() {
    if !require_vm_tools() {
        return;
    }
    let Some(mkfs) = require_tool("mkfs.erofs", "erofs-utils") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = static_binary("layerpass", "layerpass").unwrap();

    // A layer: EROFS (erofs-utils) with containerd's verity layout appended.
    let root = d.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("hello.txt"), "hello from the layer\n").unwrap();
    fs::write(
        root.join("etc/big"),
        (0..300_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let layer = d.join("layer.erofs");
    run(Command::new(&mkfs).arg("-T0").arg(&layer).arg(&root)).unwrap();
    format_file(&layer, &FormatOptions::containerd(), None).unwrap();
    let layer_sum = sha_padded(&layer);

    // Three blobs for the composite disk, named by digest.
    let mut blobs: Vec<(PathBuf, String)> = Vec::new();
    for (i, len) in [20_000usize, 4096, 1_000_000].into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|j| ((j * (i + 3)) % 251) as u8).collect();
        // The digest names the partition: a real sha256, distinct in its first 32 digits.
        let digest = hex::encode(Sha256::digest(&data));
        let p = d.join(format!("{digest}.erofs"));
        fs::write(&p, &data).unwrap();
        blobs.push((p, digest));
    }
    let scratch = d.join("rwlayer.img");
    let payload: Vec<u8> = (0..65_536u32).map(|i| (i * 7 % 256) as u8).collect();

    let layer_sock = d.join("layer.sock");
    let layer_args = ["--layer", layer.to_str().unwrap(), "--serial", "lp-layer"];
    let mut layer_srv = serve(&bin, &layer_sock, &layer_args);
    let comp_sock = d.join("comp.sock");
    let comp_args: Vec<&str> = std::iter::once("--composite")
        .chain(blobs.iter().map(|(p, _)| p.to_str().unwrap()))
        .collect();
    let _comp_srv = serve(&bin, &comp_sock, &comp_args);
    let scratch_sock = d.join("scratch.sock");
    let _scratch_srv = serve(
        &bin,
        &scratch_sock,
        &[
            "--scratch",
            scratch.to_str().unwrap(),
            "--size",
            "64M",
            "--serial",
            "lp-scratch",
        ],
    );

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = d.join("initrd.gz");
    Initramfs::standard(&kernel)
        .unwrap()
        .file("payload", &payload, 0o644)
        .test_script(SCRIPT)
        .write(&initrd)
        .unwrap();
    let dev = |socket: &Path, reconnect| VhostUserBlk {
        socket: socket.to_owned(),
        num_queues: Some(2),
        reconnect_ms: reconnect,
    };
    let mut vm = VmBuilder::new("vhost-blk", &kernel, &initrd)
        .vhost_user_blk(dev(&layer_sock, Some(200)))
        .vhost_user_blk(dev(&comp_sock, None))
        .vhost_user_blk(dev(&scratch_sock, None))
        .serial_port(RESTART_PORT)
        .spawn()
        .unwrap();
    let restart_port = vm.connect_port(RESTART_PORT, BOOT_TIMEOUT).unwrap();

    // The guest has read the layer disk once and waits on the port. Kill its backend, start
    // a new one (listening once `serve_blk_logged` returns), and only then let the guest
    // read again: QEMU reconnects (`reconnect-ms`), and the old backend is gone.
    vm.wait_for("RESTART-READY", BOOT_TIMEOUT).unwrap();
    layer_srv.kill();
    let layer_log = d.join("layer-restarted.log");
    let mut layer_srv2 = serve_logged(&bin, &layer_sock, &layer_args, &layer_log);
    (&restart_port).write_all(b"backend restarted\n").unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();
    // SIGTERM ends the connection; the backend logs what it served on it and exits.
    let status = layer_srv2.terminate(BOOT_TIMEOUT).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "restarted layer backend: {status:?}"
    );

    assert_eq!(
        vm.lines_with("SUM layer "),
        std::slice::from_ref(&layer_sum)
    );
    assert_eq!(vm.lines_with("FILE "), ["hello from the layer"]);
    let parts = vm.lines_with("PART ");
    assert_eq!(parts.len(), 3, "{parts:?}");
    let names: std::collections::HashSet<&str> = parts
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names.len(), 3, "partition names must differ: {parts:?}");
    for (i, ((blob, digest), line)) in blobs.iter().zip(&parts).enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields[0].ends_with(&(i + 1).to_string()), "{line}");
        assert_eq!(fields[1], format!("lp-{}", &digest[..32]), "{line}");
        assert_eq!(fields[2], sha_padded(blob), "{line}");
    }
    assert_eq!(vm.lines_with("BEFORE "), std::slice::from_ref(&layer_sum));
    let after = vm.lines_with("AFTER ");
    assert_eq!(after.len() as u64, READS_AFTER_RESTART, "{after:?}");
    for l in &after {
        assert!(
            l.ends_with(&layer_sum),
            "a read after the restart differs: {l}"
        );
    }
    // The reads after the restart reached the new backend: it accepted one frontend
    // connection (QEMU reconnecting) and served at least one request per 4 KiB block read.
    let log = fs::read_to_string(&layer_log).unwrap();
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("frontend connected"))
        .collect();
    assert!(
        connected.len() == 1 && log_field(connected[0], "connection") == Some("1"),
        "the restarted layer backend must accept exactly one frontend connection \
         (QEMU reconnecting); its log:\n{log}"
    );
    let requests: u64 = log
        .lines()
        .filter(|l| log_field(l, "connection") == Some("1"))
        .find_map(|l| log_field(l, "requests"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!("the restarted layer backend logged no request count; its log:\n{log}")
        });
    let blocks = fs::metadata(&layer).unwrap().len().div_ceil(4096);
    assert!(
        requests >= READS_AFTER_RESTART * blocks,
        "the restarted layer backend served {requests} requests, but the guest read \
         {READS_AFTER_RESTART} x {blocks} blocks with O_DIRECT after the restart; its log:\n{log}"
    );
    assert_eq!(vm.lines_with("WROTE").len(), 1);
    let on_host = fs::read(&scratch).unwrap();
    assert_eq!(vm.lines_with("EXT4 "), ["4096"]);
    assert_eq!(
        on_host[4096 * 16300..4096 * 16300 + payload.len()],
        payload[..]
    );
}

/// The value of `key=value` in a log line of `layerpass blk serve`.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `layerpass blk serve --queues 2 ARGS` (the guests have 2 vCPUs), socket ready.
fn serve(bin: &Path, socket: &Path, args: &[&str]) -> ChildGuard {
    serve_blk(bin, socket, &[&["--queues", "2"], args].concat()).unwrap()
}

/// [`serve`] with the server's log in the file `log`.
fn serve_logged(bin: &Path, socket: &Path, args: &[&str], log: &Path) -> ChildGuard {
    serve_blk_logged(bin, socket, &[&["--queues", "2"], args].concat(), log).unwrap()
}

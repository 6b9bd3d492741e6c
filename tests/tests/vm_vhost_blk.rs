//! The vhost-user-blk backend under a real Linux guest (QEMU, Debian cloud kernel): a layer
//! disk (EROFS with its dm-verity tree appended) read whole and mounted, a composite disk
//! whose GPT partitions the guest kernel finds by name, a scratch disk written and flushed,
//! and a backend killed with SIGKILL and restarted while the guest keeps reading.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use layerpass::verity::{FormatOptions, format_file};
use layerpass_tests::tools::{require_tool, run};
use layerpass_tests::vm::{
    BOOT_TIMEOUT, ChildGuard, Initramfs, VhostUserBlk, VmBuilder, assets, require_vm_tools,
    serve_blk, static_binary,
};
use sha2::{Digest, Sha256};

fn sha_padded(path: &Path) -> String {
    let mut data = fs::read(path).unwrap();
    data.resize(data.len().div_ceil(4096) * 4096, 0);
    hex::encode(Sha256::digest(&data))
}

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
i=0
while [ $i -lt 12 ]; do
  echo 3 > /proc/sys/vm/drop_caches
  echo "LOOP $i $(sha256sum < "$d" | cut -d' ' -f1)"
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
        .spawn()
        .unwrap();

    // Kill the layer backend while the guest is reading, then start a new one.
    vm.wait_for("LOOP 2 ", BOOT_TIMEOUT).unwrap();
    layer_srv.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _layer_srv2 = serve(&bin, &layer_sock, &layer_args);
    vm.wait_result(BOOT_TIMEOUT).unwrap();

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
    let loops = vm.lines_with("LOOP ");
    assert_eq!(loops.len(), 12, "{loops:?}");
    for l in &loops {
        assert!(
            l.ends_with(&layer_sum),
            "a read after the restart differs: {l}"
        );
    }
    assert_eq!(vm.lines_with("WROTE").len(), 1);
    let on_host = fs::read(&scratch).unwrap();
    assert_eq!(vm.lines_with("EXT4 "), ["4096"]);
    assert_eq!(
        on_host[4096 * 16300..4096 * 16300 + payload.len()],
        payload[..]
    );
}

/// `layerpass blk serve --queues 2 ARGS` (the guests have 2 vCPUs), socket ready.
fn serve(bin: &Path, socket: &Path, args: &[&str]) -> ChildGuard {
    serve_blk(bin, socket, &[&["--queues", "2"], args].concat()).unwrap()
}

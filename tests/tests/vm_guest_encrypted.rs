//! The encrypted upper in a real guest (QEMU, Debian 6.1 cloud kernel), one boot: a
//! confidential container on an `encrypted-disk` upper writes a file of a marker string; the
//! host finds no trace of the marker in the scratch file; the guest reads the file back
//! after dropping its caches; then the host flips one byte in every 4 KiB of the disk past
//! the superblock and the guest's read fails with EIO instead of returning altered bytes.
//! Unmount leaves no device-mapper device, a second mount starts empty, and a plain disk
//! upper stays refused in confidential mode.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use layerpass::plan::Upper;
use layerpass_tests::plans;
use layerpass_tests::vm::{
    BOOT_TIMEOUT, Initramfs, TestImage, VmBuilder, assets, modules, require_vm_tools, static_binary,
};

/// The virtio-serial port on which the host says it has tampered with the disk.
const TAMPER_PORT: &str = "lp-tamper";
/// The marker the container writes (many times over).
const MARKER: &str = "LAYERPASS-SECRET-MARKER-7f3a9c";
/// Size of the scratch disk: two ext2 block groups of 128 MiB (the second partial), so the
/// backup superblock of a second group is written too. Sparse on the host.
const SCRATCH_BYTES: u64 = 160 << 20;

const SCRIPT: &str = r#"
G=/bin/layerpass-guest
C="--confidential --measure log --reference-values /refs.toml"
dms() { ls /sys/block | grep -c '^dm-' || true; }
try() {
  name=$1
  shift
  if "$@" >/tmp/out 2>/tmp/err; then
    echo "$name rc=0 $(cat /tmp/out)"
  else
    echo "$name rc=$? $(tail -n 1 /tmp/err)"
  fi
}
mkdir -p /run/layerpass/rootfs
try PLAIN-DISK $G mount $C --plan /plans/plain.json
echo "AFTER-PLAIN dm=$(dms)"

r=$($G mount $C --plan /plans/enc.json)
echo "ROOTFS $r"
echo "UPPER-MOUNT $(grep ' /run/layerpass/containers/enc/upper ' /proc/mounts | cut -d' ' -f1,3)"
echo "DM-DEVICES $(dms)"
i=0
: > /tmp/secret
while [ $i -lt 512 ]; do echo "$MARKER $i" >> /tmp/secret; i=$((i + 1)); done
cp /tmp/secret "$r/secret.txt"
sync
echo 3 > /proc/sys/vm/drop_caches
cmp /tmp/secret "$r/secret.txt" && echo "READ-BACK ok"
# Nothing so far read a sector that was never written (each would be an AEAD error).
echo "AEAD-ERRORS $(dmesg | grep -c 'INTEGRITY AEAD ERROR' || true)"
echo "VERIFIED $(cat "$r/data/f.txt")"
go=$(lp_port lp-tamper)
echo TAMPER-READY
read -r line < "$go"
[ "$line" = "tampered" ]
echo 3 > /proc/sys/vm/drop_caches
if cat "$r/secret.txt" > /tmp/after 2>/tmp/err; then
  if cmp -s /tmp/secret /tmp/after; then echo "TAMPERED-READ unchanged"; else echo "TAMPERED-READ altered"; fi
else
  echo "TAMPERED-READ failed $(tail -n 1 /tmp/err)"
fi
$G unmount enc
echo "AFTER-UNMOUNT dm=$(dms) mounts=$(grep -c ' /run/layerpass/' /proc/mounts || true)"

r=$($G mount $C --plan /plans/enc.json)
if [ -e "$r/secret.txt" ]; then echo "SECOND-MOUNT has-file"; else echo "SECOND-MOUNT empty"; fi
echo "second" > "$r/new.txt"
sync
echo "SECOND-WRITE $(cat "$r/new.txt")"
$G unmount enc
echo "FINAL dm=$(dms) mounts=$(grep -c ' /run/layerpass/' /proc/mounts || true)"
"#;

/// Flips one byte (at +123) in every 4 KiB block of `path` from the second block on.
fn flip_every_block(path: &Path) -> u64 {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let mut flipped = 0;
    let mut at = 4096 + 123;
    while at < len {
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0xff;
        f.write_all_at(&b, at).unwrap();
        flipped += 1;
        at += 4096;
    }
    f.sync_all().unwrap();
    flipped
}

#[test]
fn encrypted_upper_hides_and_authenticates_the_containers_writes() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();
    let (blob, digest, root) = plans::verified_file_layer(d).unwrap();
    let layer = plans::on_disk(&blob, &digest, "lp-l0").unwrap();
    let enc = plans::plan_json(
        "enc",
        std::slice::from_ref(&layer),
        Upper::EncryptedDisk {
            serial: "lp-enc".into(),
        },
    )
    .unwrap();
    let plain = plans::plan_json(
        "plain",
        std::slice::from_ref(&layer),
        Upper::Disk {
            serial: "lp-enc".into(),
            fs_type: "ext4".into(),
        },
    )
    .unwrap();
    let scratch = d.join("scratch.img");
    fs::File::create(&scratch)
        .unwrap()
        .set_len(SCRATCH_BYTES)
        .unwrap();

    let kernel = assets::cloud_kernel().unwrap();
    let crypto = modules::resolve(&kernel, &["dm_integrity", "dm_crypt", "aegis128"]).unwrap();
    let initrd = d.join("initrd.gz");
    let mut initramfs = Initramfs::standard(&kernel).unwrap();
    initramfs
        .modules(&crypto)
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .file(
            "/refs.toml",
            format!("root_hashes = [\"{root}\"]\n").as_bytes(),
            0o644,
        )
        .file("/plans/enc.json", &enc, 0o644)
        .file("/plans/plain.json", &plain, 0o644);
    let script = format!("MARKER={MARKER}\n{SCRIPT}");
    initramfs.test_script(&script).write(&initrd).unwrap();
    let mut vm = VmBuilder::new("guest-encrypted", &kernel, &initrd)
        .disk(&blob, "lp-l0")
        .disk_rw(&scratch, "lp-enc")
        .serial_port(TAMPER_PORT)
        .spawn()
        .unwrap();
    let port = vm.connect_port(TAMPER_PORT, BOOT_TIMEOUT).unwrap();
    vm.wait_for("TAMPER-READY", BOOT_TIMEOUT).unwrap();

    // The container's file reached the disk (it was read back after dropping caches), but
    // the host sees ciphertext only.
    let image = fs::read(&scratch).unwrap();
    assert!(
        !image.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "the marker is readable in the scratch file"
    );
    assert!(
        image.iter().any(|&b| b != 0),
        "nothing was written to the scratch disk"
    );
    let flipped = flip_every_block(&scratch);
    assert_eq!(flipped, SCRATCH_BYTES / 4096 - 1);
    (&port).write_all(b"tampered\n").unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();

    let line = |prefix: &str| {
        let lines = vm.lines_with(&format!("{prefix} "));
        assert_eq!(lines.len(), 1, "{prefix}: {lines:?}");
        lines[0].clone()
    };
    let plain_line = line("PLAIN-DISK");
    assert!(
        plain_line.starts_with("rc=14 PermissionDenied: "),
        "{plain_line}"
    );
    assert_eq!(line("AFTER-PLAIN"), "dm=0");
    assert_eq!(line("ROOTFS"), "/run/layerpass/rootfs/enc");
    // The upper is the crypt device (named after the scratch disk's device number).
    let upper = line("UPPER-MOUNT");
    assert!(
        upper.starts_with("/dev/mapper/lp-up-") && upper.ends_with("-crypt ext4"),
        "{upper}"
    );
    // The layer's verity device, the integrity and the crypt device.
    assert_eq!(line("DM-DEVICES"), "3");
    assert_eq!(line("READ-BACK"), "ok");
    assert_eq!(line("AEAD-ERRORS"), "0");
    assert_eq!(line("VERIFIED"), "verified");
    let tampered = line("TAMPERED-READ");
    assert!(
        tampered.starts_with("failed ") && tampered.contains("Input/output error"),
        "a tampered file must fail with EIO: {tampered}"
    );
    assert_eq!(line("AFTER-UNMOUNT"), "dm=0 mounts=0");
    assert_eq!(line("SECOND-MOUNT"), "empty");
    assert_eq!(line("SECOND-WRITE"), "second");
    assert_eq!(line("FINAL"), "dm=0 mounts=0");
}

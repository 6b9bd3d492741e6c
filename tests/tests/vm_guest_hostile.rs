//! The guest agent against a hostile host (QEMU, Debian 6.1 cloud kernel), all in one
//! guest boot: plans whose mount point aims at `/etc`, the run directory, a symlink, a
//! mount or another container's rootfs; scratch disks whose `upper`/`work` are symlinks;
//! a scratch-disk upper in confidential mode; forged `state.json` records (on a mount
//! under `containers/`, and with host paths on the run directory's own filesystem). Each
//! is refused (or ignored) with nothing left behind, and a later plan naming the forged
//! root hash gets its own verified device.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerpass::plan::Upper;
use layerpass_tests::plans;
use layerpass_tests::tools::{require_tool, run};
use layerpass_tests::vm::{
    BOOT_TIMEOUT, Initramfs, TestImage, VmBuilder, assets, require_vm_tools, static_binary,
};
use serde_json::Value;

/// An ext4 scratch image of 32 MiB holding `symlink -> /etc` at its root (none if
/// `symlink` is empty).
fn scratch(d: &Path, mkfs: &Path, name: &str, symlink: &str) -> PathBuf {
    let content = d.join(format!("{name}-content"));
    fs::create_dir_all(&content).unwrap();
    if !symlink.is_empty() {
        std::os::unix::fs::symlink("/etc", content.join(symlink)).unwrap();
    }
    let img = d.join(format!("{name}.img"));
    fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    run(Command::new(mkfs)
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&content)
        .arg(&img))
    .unwrap();
    img
}

const SCRIPT: &str = r#"
G=/bin/layerpass-guest
C="--confidential --measure log --reference-values /refs.toml"
# try NAME CMD...: prints "NAME rc=<rc> <last stderr line>" (the error, after any log lines).
try() {
  name=$1
  shift
  if "$@" >/tmp/out 2>/tmp/err; then
    echo "$name rc=0 $(cat /tmp/out)"
  else
    echo "$name rc=$? $(tail -n 1 /tmp/err)"
  fi
}
leftovers() {
  dm=$(ls /sys/block | grep -c '^dm-' || true)
  mnt=$(grep -c ' /run/layerpass/' /proc/mounts || true)
  echo "$1 dm=$dm mounts=$mnt"
}
mkdir -p /run/layerpass/rootfs

# Mount points that are no relative path: refused as malformed.
try ABS-ETC $G mount $C --plan /plans/etc.json
try ABS-RUN $G mount $C --plan /plans/run.json
try DOTDOT $G mount $C --plan /plans/dotdot.json
echo "ETC-MOUNTED $(grep -c ' /etc ' /proc/mounts || true)"
ls -d /run/layerpass/containers/evil 2>/dev/null && echo "EVIL-DIR exists"

# A symlink and a mount beneath the rootfs root.
ln -s /etc /run/layerpass/rootfs/link
try SYMLINK $G mount $C --plan /plans/link.json
mkdir /run/layerpass/rootfs/xmnt
mount -t tmpfs tmpfs /run/layerpass/rootfs/xmnt
try XDEV $G mount $C --plan /plans/xdev.json
umount /run/layerpass/rootfs/xmnt
leftovers AFTER-MOUNT-POINTS

# Another container's rootfs: a, then b into a/etc.
r=$($G mount $C --plan /plans/a.json)
echo "A-ROOTFS $r"
try INTO-A $G mount $C --plan /plans/into-a.json
echo "A-FILE $(cat "$r/data/f.txt")"
$G unmount a

# Scratch disks whose upper/ or work/ is a symlink to /etc (outside confidential mode),
# a plain scratch disk (mounted nosymfollow,nosuid,nodev), and confidential mode refusing
# a scratch-disk upper.
try UPPER-LINK $G mount --plan /plans/up-link.json
try WORK-LINK $G mount --plan /plans/work-link.json
r=$($G mount --plan /plans/disk.json)
echo "UPPER-OPTS $(grep ' /run/layerpass/containers/disk/upper ' /proc/mounts | cut -d' ' -f4)"
$G unmount disk
try CONF-DISK $G mount $C --plan /plans/disk.json
leftovers AFTER-UPPERS

# Forged state: a template record from a real mount, then
# - evil: consistent, on a tmpfs mounted under containers/ (what a plan's mount point
#   there used to produce): another filesystem;
# - evil2: on the run directory's own filesystem, the layer "mounted" at host files.
$G mount --plan /plans/tmpl.json >/dev/null
cp /run/layerpass/containers/tmpl/state.json /tmp/tmpl.json
$G unmount tmpl
mkdir -p /run/layerpass/containers/evil
mount -t tmpfs tmpfs /run/layerpass/containers/evil
sed 's/tmpl/evil/g' /tmp/tmpl.json > /run/layerpass/containers/evil/state.json
mkdir -p /run/layerpass/containers/evil2 /forged-files/data
echo FORGED > /forged-files/data/f.txt
sed 's/tmpl/evil2/g; s#/run/layerpass/layers/[^"]*#/forged-files#' /tmp/tmpl.json \
  > /run/layerpass/containers/evil2/state.json
$G list >/tmp/list 2>/tmp/list.err
echo "LISTED $(wc -l < /tmp/list)"
echo "SKIPPED $(grep -c 'skipping a state record' /tmp/list.err)"
try VICTIM $G mount $C --json --plan /plans/victim.json
echo "VICTIM-FILE $(cat /run/layerpass/rootfs/victim/data/f.txt)"
echo "VICTIM-DM $(ls /dev/mapper | grep -vc '^control$')"
$G unmount victim
# Unmounting the forged ids touches nothing they name.
$G unmount evil
$G unmount evil2
echo "FORGED-FILES $(cat /forged-files/data/f.txt)"
umount /run/layerpass/containers/evil
leftovers FINAL
"#;

#[test]
fn hostile_plans_and_forged_state_are_refused_in_one_guest() {
    if !require_vm_tools() {
        return;
    }
    let Some(mkfs) = require_tool("mkfs.ext4", "e2fsprogs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();
    let (blob, digest, root) = plans::verified_file_layer(d).unwrap();
    let layer = plans::on_disk(&blob, &digest, "lp-l0").unwrap();
    let tmpfs = Upper::Tmpfs {
        size_bytes: 16 << 20,
    };
    let disk = |serial: &str| Upper::Disk {
        serial: serial.to_owned(),
        fs_type: "ext4".into(),
    };
    // A plan with its mount point set as the host likes (the builder refuses such, so the
    // JSON is edited).
    let plan = |id: &str, upper: Upper, mount_point: Option<&str>| {
        let json = plans::plan_json(id, std::slice::from_ref(&layer), upper).unwrap();
        let mut v: Value = serde_json::from_slice(&json).unwrap();
        if let Some(mp) = mount_point {
            v["mountPoint"] = mp.into();
        }
        serde_json::to_vec(&v).unwrap()
    };
    let plan_files = [
        ("etc", plan("h1", tmpfs.clone(), Some("/etc"))),
        (
            "run",
            plan("h2", tmpfs.clone(), Some("/run/layerpass/containers/evil")),
        ),
        (
            "dotdot",
            plan("h3", tmpfs.clone(), Some("../containers/evil")),
        ),
        ("link", plan("h4", tmpfs.clone(), Some("link/x"))),
        ("xdev", plan("h5", tmpfs.clone(), Some("xmnt/y"))),
        ("a", plan("a", tmpfs.clone(), None)),
        ("into-a", plan("b", tmpfs.clone(), Some("a/etc"))),
        ("up-link", plan("u1", disk("lp-up-link"), None)),
        ("work-link", plan("u2", disk("lp-work-link"), None)),
        ("disk", plan("disk", disk("lp-plain"), None)),
        ("tmpl", plan("tmpl", tmpfs.clone(), None)),
        ("victim", plan("victim", tmpfs.clone(), None)),
    ];
    let refs = format!("root_hashes = [\"{root}\"]\n");

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = d.join("initrd.gz");
    let mut initramfs = Initramfs::standard(&kernel).unwrap();
    initramfs
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .file("/refs.toml", refs.as_bytes(), 0o644);
    for (name, p) in &plan_files {
        initramfs.file(&format!("/plans/{name}.json"), p, 0o644);
    }
    initramfs.test_script(SCRIPT).write(&initrd).unwrap();
    let mut vm = VmBuilder::new("guest-hostile", &kernel, &initrd)
        .disk(&blob, "lp-l0")
        .disk_rw(&scratch(d, &mkfs, "up-link", "upper"), "lp-up-link")
        .disk_rw(&scratch(d, &mkfs, "work-link", "work"), "lp-work-link")
        .disk_rw(&scratch(d, &mkfs, "plain", ""), "lp-plain")
        .spawn()
        .unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();

    let line = |prefix: &str| {
        let lines = vm.lines_with(&format!("{prefix} "));
        assert_eq!(lines.len(), 1, "{prefix}: {lines:?}");
        lines[0].clone()
    };
    let refused = |prefix: &str, kind: &str, rc: u32, what: &str| {
        let l = line(prefix);
        assert!(l.starts_with(&format!("rc={rc} {kind}: ")), "{prefix}: {l}");
        assert!(l.contains(what), "{prefix}: {l}");
    };
    // Malformed mount points: InvalidArgument (10) naming the field.
    refused(
        "ABS-ETC",
        "InvalidArgument",
        10,
        "mount_point \"/etc\": is absolute",
    );
    refused(
        "ABS-RUN",
        "InvalidArgument",
        10,
        "mount_point \"/run/layerpass/containers/evil\"",
    );
    refused("DOTDOT", "InvalidArgument", 10, "'..'");
    assert_eq!(line("ETC-MOUNTED"), "0");
    assert!(vm.lines_with("EVIL-DIR ").is_empty());
    // What they resolve to: PermissionDenied (14).
    refused(
        "SYMLINK",
        "PermissionDenied",
        14,
        "mount_point link/x: link is a symlink",
    );
    refused(
        "XDEV",
        "PermissionDenied",
        14,
        "mount_point xmnt/y: xmnt is a mount point",
    );
    assert_eq!(line("AFTER-MOUNT-POINTS"), "dm=0 mounts=0");
    assert_eq!(line("A-ROOTFS"), "/run/layerpass/rootfs/a");
    refused(
        "INTO-A",
        "PermissionDenied",
        14,
        "mount_point a/etc: overlaps container a's rootfs a",
    );
    assert_eq!(line("A-FILE"), "verified");
    // Host-written scratch disks.
    refused(
        "UPPER-LINK",
        "PermissionDenied",
        14,
        "upper: upper/ on the upper filesystem is a symlink",
    );
    refused(
        "WORK-LINK",
        "PermissionDenied",
        14,
        "upper: work/ on the upper filesystem is a symlink",
    );
    let opts = line("UPPER-OPTS");
    for o in ["nosuid", "nodev", "nosymfollow"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {opts}");
    }
    refused(
        "CONF-DISK",
        "PermissionDenied",
        14,
        "policy: upper: a scratch-disk upper",
    );
    assert_eq!(line("AFTER-UPPERS"), "dm=0 mounts=0");
    // Forged state: both records skipped; the victim gets its own verified device.
    assert_eq!(line("LISTED"), "0");
    assert_eq!(line("SKIPPED"), "2");
    let victim = line("VICTIM");
    assert!(victim.starts_with("rc=0 "), "{victim}");
    let resp: Value = serde_json::from_str(&victim["rc=0 ".len()..]).unwrap();
    assert_eq!(resp["layers"][0]["shared"], false, "{resp}");
    assert_eq!(resp["layers"][0]["root_hash"], root.as_str(), "{resp}");
    assert_eq!(line("VICTIM-FILE"), "verified");
    assert_eq!(line("VICTIM-DM"), "1");
    assert_eq!(line("FORGED-FILES"), "FORGED");
    assert_eq!(line("FINAL"), "dm=0 mounts=0");
}

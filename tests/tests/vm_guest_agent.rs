//! The guest agent in a real Linux guest (QEMU, Debian cloud kernel): layers exported by
//! `layerpass blk serve` (one disk per layer, and one composite GPT disk), opened through
//! dm-verity, mounted as EROFS and stacked with overlayfs by the one-shot
//! `layerpass-guest mount --plan` / `unmount`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerpass::erofs::{ConvertOptions, ConvertReport, convert_layer};
use layerpass::plan::{LayerPlacement, PlannedLayer, Upper};
use layerpass_tests::plans;
use layerpass_tests::tools::{require_tool, run};
use layerpass_tests::vm::{
    BOOT_TIMEOUT, ChildGuard, Initramfs, TestImage, VhostUserBlk, VmBuilder, assets,
    require_vm_tools, serve_blk, static_binary,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn vub(socket: &Path) -> VhostUserBlk {
    VhostUserBlk {
        socket: socket.to_owned(),
        num_queues: Some(2),
        reconnect_ms: None,
    }
}

/// A converted layer: the blob (EROFS + containerd's verity layout) and its report.
struct Layer {
    blob: PathBuf,
    report: ConvertReport,
}

impl Layer {
    fn digest(&self) -> &str {
        &self.report.diff_id
    }

    fn root_hash(&self) -> &str {
        self.report.root_hash.as_deref().unwrap()
    }

    /// The composite disk's partition name for this layer.
    fn partition(&self) -> String {
        format!("lp-{}", &self.digest()["sha256:".len()..][..32])
    }
}

/// Tars `tree` (with numeric root ownership) and converts it.
fn make_layer(dir: &Path, name: &str, tree: &Path) -> Layer {
    let tar = dir.join(format!("{name}.tar"));
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "-C",
        ])
        .arg(tree)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .unwrap();
    let blob = dir.join(format!("{name}.erofs"));
    let report = convert_layer(
        fs::File::open(&tar).unwrap(),
        &blob,
        &ConvertOptions::default(),
    )
    .unwrap();
    assert!(report.root_hash.is_some() && report.hash_offset.is_some());
    Layer { blob, report }
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// The layer on the whole disk with `serial`, planned by the host's plan builder.
fn on_disk(l: &Layer, serial: &str) -> PlannedLayer {
    plans::on_disk(&l.blob, l.digest(), serial).unwrap()
}

/// The layer as its partition of the composite disk.
fn on_part(l: &Layer) -> PlannedLayer {
    plans::on_composite(&l.blob, l.digest()).unwrap()
}

/// The one-shot plan file for `id`.
fn plan(id: &str, layers: &[PlannedLayer], upper: Upper) -> Vec<u8> {
    plans::plan_json(id, layers, upper).unwrap()
}

fn scratch_upper(serial: &str) -> Upper {
    Upper::Disk {
        serial: serial.to_owned(),
        fs_type: "ext4".into(),
    }
}

fn tmpfs_upper() -> Upper {
    Upper::Tmpfs {
        size_bytes: 64 << 20,
    }
}

/// Shell helpers for the guest scripts.
const HELPERS: &str = r#"
G=/bin/layerpass-guest
# tree DIR: one line per entry, "TREE <type> <path> [<sha256>|<target>]", sorted.
tree() {
  ( cd "$1" && find . -mindepth 1 | sort | while read -r p; do
      if [ -L "$p" ]; then echo "TREE l $p $(readlink "$p")"
      elif [ -d "$p" ]; then echo "TREE d $p"
      elif [ -c "$p" ]; then echo "TREE c $p"
      elif [ -f "$p" ]; then echo "TREE f $p $(sha256sum < "$p" | cut -d' ' -f1)"
      else echo "TREE ? $p"; fi
    done )
}
# leftovers: what the agent may leave behind, counted.
leftovers() {
  dm=$(ls /sys/block | grep -c '^dm-' || true)
  mapper=$(ls /dev/mapper | grep -vc '^control$' || true)
  mnt=$(grep -c ' /run/layerpass/' /proc/mounts || true)
  cont=$(ls /run/layerpass/containers 2>/dev/null | wc -l)
  lay=$(ls /run/layerpass/layers 2>/dev/null | wc -l)
  echo "$1 dm=$dm mapper=$mapper mounts=$mnt containers=$cont layers=$lay"
}
# expect_fail NAME CMD...: runs CMD, which must fail; prints "NAME rc=<rc> <stderr>".
expect_fail() {
  name=$1
  shift
  if "$@" >/tmp/out 2>/tmp/err; then
    echo "$name rc=0 $(cat /tmp/out)"
  else
    echo "$name rc=$? $(tr '\n' ' ' < /tmp/err)"
  fi
}
"#;

const MAIN_SCRIPT: &str = r#"
# 1. Three layers on their own disks, upper on the scratch disk.
r=$($G mount --plan /plans/c1.json)
echo "ROOTFS c1 $r"
tree "$r"
leftovers AFTER-C1
echo written > "$r/new.txt"
rm "$r/keep"
sync
$G unmount c1
leftovers AFTER-UNMOUNT-C1
r=$($G mount --plan /plans/c1.json)
echo "REMOUNT new=$(cat "$r/new.txt") keep=$([ -e "$r/keep" ] && echo present || echo gone)"

# 2. The same layers from the composite disk's partitions, for a second container.
echo "MOUNT-C2 $($G mount --json --plan /plans/c2.json | tr -d '\n ')"
leftovers AFTER-C2
for e in $(ls /sys/block | grep '^dm-'); do echo "DMDEV $e $(cat /sys/block/$e/dm/name)"; done
$G unmount c1
leftovers AFTER-UNMOUNT-C1-AGAIN
$G unmount c2
$G unmount c2
leftovers AFTER-UNMOUNT-BOTH

# 3. A tampered blob: the affected file fails with EIO, the others read.
r=$($G mount --plan /plans/c3.json)
if head -c 1000000 "$r/victim" > /tmp/victim 2>/tmp/victim.err; then
  echo "TAMPER-READ ok"
else
  echo "TAMPER-READ failed $(cat /tmp/victim.err)"
fi
echo "TAMPER-PARTIAL $(wc -c < /tmp/victim) $(sha256sum < /tmp/victim | cut -d' ' -f1)"
echo "TAMPER-OTHER $(cat "$r/ok.txt")"
echo "TAMPER-DMESG $(dmesg | grep -c 'verity.*corrupted')"
$G unmount c3
leftovers AFTER-TAMPER

# 4. A wrong root hash: the table loads, the first read fails.
expect_fail WRONG-ROOT $G mount --plan /plans/c4.json
leftovers AFTER-WRONG-ROOT

# 5. Reference values that do not list layer 1: refused before anything is created.
expect_fail REFUSED $G mount --confidential --measure log --reference-values /refs-partial.toml --plan /plans/c5.json
echo "MAPPER $(ls /dev/mapper | tr '\n' ' ')"
leftovers AFTER-REFUSED
# ... and so is a scratch-disk upper, even over listed layers.
expect_fail DISK-UPPER $G mount --confidential --measure log --reference-values /refs-all.toml --plan /plans/c1.json
leftovers AFTER-DISK-UPPER
r=$($G mount --confidential --measure log --reference-values /refs-all.toml --plan /plans/c5.json)
echo "CONFIDENTIAL-OK $(cat "$r/top.txt")"
$G unmount c5

# 6. A disk that never appears.
start=$(date +%s)
expect_fail NEVER $G mount --device-timeout 3 --plan /plans/c6.json
echo "NEVER-SECONDS $(($(date +%s) - start))"
leftovers AFTER-NEVER

# 7. A disk hot-plugged while the agent waits for it.
$G mount --device-timeout 120 --plan /plans/c7.json > /tmp/c7.out 2>/tmp/c7.err &
pid=$!
sleep 1
echo HOTPLUG-NOW
wait $pid
r=$(cat /tmp/c7.out)
echo "HOTPLUG-MOUNTED $(cat "$r/data/b.txt")"
$G unmount c7

# 8. A layer without verity: refused under --require-verity, else the raw disk is mounted.
expect_fail NO-VERITY-REFUSED $G mount --require-verity --plan /plans/c8.json
leftovers AFTER-NO-VERITY-REFUSED
echo "NO-VERITY $($G mount --json --plan /plans/c8.json | tr -d '\n ')"
echo "NO-VERITY-FILE $(cat /run/layerpass/rootfs/c8/data/b.txt)"
$G unmount c8

leftovers FINAL
sed 's/^/EVENT /' /run/layerpass/events.jsonl
"#;

/// The 3-layer image: returns (top, middle, bottom) trees' layers and the expected merged
/// tree lines (`TREE ...`) relative to the rootfs.
fn three_layers(d: &Path) -> Vec<Layer> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Bottom.
    let t = d.join("t2");
    write(&t, "etc/os-release", b"base\n");
    write(&t, "data/a.txt", b"a\n");
    write(&t, "data/b.txt", b"b\n");
    write(&t, "data/big", &big);
    write(&t, "opaque/old1", b"x\n");
    write(&t, "opaque/sub/old2", b"y\n");
    write(&t, "del/me", b"gone\n");
    write(&t, "del/stays", b"stays\n");
    write(&t, "keep", b"keep\n");
    let l2 = make_layer(d, "l2", &t);
    // Middle: overrides a file, whiteouts a file, makes a directory opaque.
    let t = d.join("t1");
    write(&t, "etc/os-release", b"mid\n");
    write(&t, "data/.wh.a.txt", b"");
    write(&t, "opaque/.wh..wh..opq", b"");
    write(&t, "opaque/new", b"n\n");
    let l1 = make_layer(d, "l1", &t);
    // Top.
    let t = d.join("t0");
    write(&t, "top.txt", b"top\n");
    write(&t, "del/.wh.me", b"");
    write(&t, "bin/hello", b"#!/bin/sh\necho hello\n");
    std::os::unix::fs::symlink("top.txt", t.join("link")).unwrap();
    let l0 = make_layer(d, "l0", &t);
    vec![l0, l1, l2]
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn expected_tree() -> Vec<String> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut v = vec![
        "d ./bin".to_owned(),
        format!("f ./bin/hello {}", sha(b"#!/bin/sh\necho hello\n")),
        "d ./data".to_owned(),
        format!("f ./data/b.txt {}", sha(b"b\n")),
        format!("f ./data/big {}", sha(&big)),
        "d ./del".to_owned(),
        format!("f ./del/stays {}", sha(b"stays\n")),
        "d ./etc".to_owned(),
        format!("f ./etc/os-release {}", sha(b"mid\n")),
        format!("f ./keep {}", sha(b"keep\n")),
        "l ./link top.txt".to_owned(),
        "d ./opaque".to_owned(),
        format!("f ./opaque/new {}", sha(b"n\n")),
        format!("f ./top.txt {}", sha(b"top\n")),
    ];
    // As the guest lists them: sorted by path.
    v.sort_by(|a, b| a.split(' ').nth(1).cmp(&b.split(' ').nth(1)));
    v
}

/// The value of `key=` in a `leftovers` line.
fn counts(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn assert_clean(vm: &layerpass_tests::vm::VmGuard, label: &str) {
    let lines = vm.lines_with(&format!("{label} "));
    assert_eq!(lines.len(), 1, "{label}: {lines:?}");
    for (k, v) in counts(&lines[0]) {
        assert_eq!(v, 0, "{label}: {k} left behind: {}", lines[0]);
    }
}

#[test]
fn guest_agent_mounts_verified_layers_shares_them_and_leaves_nothing_behind() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host_bin = static_binary("layerpass", "layerpass").unwrap();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();

    let layers = three_layers(d);
    let [l0, l1, l2] = &layers[..] else {
        unreachable!()
    };

    // The tamper layer: a 3-block file whose middle block gets one flipped byte after export.
    let t = d.join("tt");
    let victim: Vec<u8> = (0..3 * 4096u32)
        .map(|i| b"TAMPERME"[(i % 8) as usize] ^ ((i / 4096) as u8))
        .collect();
    write(&t, "victim", &victim);
    write(&t, "ok.txt", b"still readable\n");
    let lt = make_layer(d, "tamper", &t);
    let middle = &victim[4096..8192];
    let at = fs::read(&lt.blob)
        .unwrap()
        .windows(middle.len())
        .position(|w| w == middle)
        .expect("the victim's middle block is in the blob");
    assert_eq!(at % 4096, 0, "file data is block aligned");

    // Backends: one disk per layer, the composite disk, the scratch disk, the tamper disk.
    let mut guards = Vec::new();
    let mut disks = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let sock = d.join(format!("l{i}.sock"));
        let s = format!("lp-l{i}");
        guards.push(serve(
            &host_bin,
            &sock,
            &["--layer", l.blob.to_str().unwrap(), "--serial", &s],
        ));
        disks.push(sock);
    }
    let comp_sock = d.join("comp.sock");
    let comp_args: Vec<String> = std::iter::once("--composite".to_owned())
        .chain(
            layers
                .iter()
                .map(|l| format!("{}@{}", l.blob.display(), l.digest())),
        )
        .collect();
    let comp_refs: Vec<&str> = comp_args.iter().map(String::as_str).collect();
    guards.push(serve(&host_bin, &comp_sock, &comp_refs));
    disks.push(comp_sock);
    // The scratch disk, formatted here with 4 KiB blocks: the disk's logical block size is
    // 4 KiB, and mke2fs picks 1 KiB blocks for a small file, which the guest cannot mount.
    let scratch = d.join("scratch.img");
    fs::File::create(&scratch)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let Some(mkfs) = require_tool("mkfs.ext4", "e2fsprogs") else {
        return;
    };
    run(Command::new(mkfs)
        .args(["-q", "-F", "-b", "4096"])
        .arg(&scratch))
    .unwrap();
    let scratch_sock = d.join("scratch.sock");
    guards.push(serve(
        &host_bin,
        &scratch_sock,
        &[
            "--scratch",
            scratch.to_str().unwrap(),
            "--size",
            "64M",
            "--serial",
            "lp-scratch",
        ],
    ));
    disks.push(scratch_sock);
    let tamper_sock = d.join("tamper.sock");
    guards.push(serve(
        &host_bin,
        &tamper_sock,
        &[
            "--layer",
            lt.blob.to_str().unwrap(),
            "--serial",
            "lp-tamper",
        ],
    ));
    disks.push(tamper_sock);
    // Tamper with the blob while it is exported: one bit of the victim's middle block.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&lt.blob).unwrap();
        let byte = [middle[100] ^ 0x01];
        f.write_all_at(&byte, (at + 100) as u64).unwrap();
        f.sync_all().unwrap();
    }

    // Plans, built by the host's plan builder from the layer files.
    let on_disks: Vec<PlannedLayer> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| on_disk(l, &format!("lp-l{i}")))
        .collect();
    let on_parts: Vec<PlannedLayer> = layers.iter().map(on_part).collect();
    for (p, l) in on_parts.iter().zip(&layers) {
        // the builder names partitions as the composite disk does: by the diff ID
        assert!(
            matches!(&p.placement, LayerPlacement::Partition { name, .. } if *name == l.partition()),
            "{:?}",
            p.placement
        );
    }
    // layer 0 with one hex digit of its root hash changed
    let mut wrong = on_disk(l0, "lp-l0");
    wrong.verity.as_mut().unwrap().root_hash[0] ^= 0x10;
    // layer 2 planned without verity (the guest mounts the raw disk, or refuses it)
    let mut unverified = on_disks[2].clone();
    unverified.verity = None;
    let plans = [
        ("c1", plan("c1", &on_disks, scratch_upper("lp-scratch"))),
        ("c2", plan("c2", &on_parts, tmpfs_upper())),
        (
            "c3",
            plan("c3", &[on_disk(&lt, "lp-tamper")], tmpfs_upper()),
        ),
        ("c4", plan("c4", &[wrong], tmpfs_upper())),
        ("c5", plan("c5", &on_parts, tmpfs_upper())),
        (
            "c6",
            plan(
                "c6",
                &[on_disks[0].clone(), on_disk(l1, "lp-never")],
                tmpfs_upper(),
            ),
        ),
        ("c7", plan("c7", &[on_disk(l2, "lp-hot")], tmpfs_upper())),
        ("c8", plan("c8", &[unverified], tmpfs_upper())),
    ];
    let refs_partial = format!(
        "root_hashes = [\"{}\", \"{}\"]\n",
        l0.root_hash(),
        l2.root_hash()
    );
    let refs_all = format!(
        "[[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n\n\
         [[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n\n\
         [[layers]]\nroot_hash = \"{}\"\n",
        l0.root_hash(),
        l0.digest(),
        l1.root_hash(),
        l1.digest(),
        l2.root_hash()
    );

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = d.join("initrd.gz");
    let mut initramfs = Initramfs::standard(&kernel).unwrap();
    initramfs
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .file("/refs-partial.toml", refs_partial.as_bytes(), 0o644)
        .file("/refs-all.toml", refs_all.as_bytes(), 0o644);
    for (id, p) in &plans {
        initramfs.file(&format!("/plans/{id}.json"), p, 0o644);
    }
    initramfs
        .test_script(&format!("{HELPERS}\n{MAIN_SCRIPT}"))
        .write(&initrd)
        .unwrap();
    let mut builder = VmBuilder::new("guest-agent", &kernel, &initrd).hotplug_ports(1);
    for sock in &disks {
        builder = builder.vhost_user_blk(vub(sock));
    }
    let mut vm = builder.spawn().unwrap();

    // The hot-plugged disk: layer 2 again, under another serial.
    vm.wait_for("HOTPLUG-NOW", BOOT_TIMEOUT).unwrap();
    let hot_sock = d.join("hot.sock");
    let _hot = serve(
        &host_bin,
        &hot_sock,
        &["--layer", l2.blob.to_str().unwrap(), "--serial", "lp-hot"],
    );
    vm.hotplug_vhost_user_blk(&vub(&hot_sock)).unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();

    // 1. The merged view.
    let tree = vm.lines_with("TREE ");
    assert_eq!(tree, expected_tree(), "merged view");
    let after_c1 = vm.lines_with("AFTER-C1 ");
    assert_eq!(
        counts(&after_c1[0]),
        [
            ("dm".to_owned(), 3),
            ("mapper".to_owned(), 3),
            ("mounts".to_owned(), 5),
            ("containers".to_owned(), 1),
            ("layers".to_owned(), 3)
        ],
        "three dm devices, three EROFS + ext4 + overlay mounts"
    );
    assert_clean(&vm, "AFTER-UNMOUNT-C1");
    assert_eq!(vm.lines_with("REMOUNT "), ["new=written keep=gone"]);

    // 2. Shared layers: c2 reuses c1's devices.
    let m2: Value = serde_json::from_str(&vm.lines_with("MOUNT-C2 ")[0]).unwrap();
    let shared: Vec<bool> = m2["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["shared"].as_bool().unwrap())
        .collect();
    assert_eq!(shared, [true, true, true], "{m2}");
    for (i, l) in m2["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l["root_hash"], layers[i].root_hash(), "{m2}");
        assert_eq!(l["digest"], layers[i].digest(), "{m2}");
    }
    let after_c2 = counts(&vm.lines_with("AFTER-C2 ")[0]);
    assert_eq!(after_c2[0], ("dm".to_owned(), 3), "each dm device once");
    let names: Vec<String> = vm.lines_with("DMDEV ");
    assert_eq!(names.len(), 3, "{names:?}");
    for l in &layers {
        let want = format!("lp-{}", &l.root_hash()[..32]);
        assert!(
            names.iter().any(|n| n.ends_with(&want)),
            "{want} in {names:?}"
        );
    }
    let again = counts(&vm.lines_with("AFTER-UNMOUNT-C1-AGAIN ")[0]);
    assert_eq!(again[0], ("dm".to_owned(), 3), "c2 still uses all three");
    assert_clean(&vm, "AFTER-UNMOUNT-BOTH");

    // 3. Tamper.
    let read = vm.lines_with("TAMPER-READ ");
    assert!(
        read[0].starts_with("failed")
            && (read[0].contains("Input/output error") || read[0].contains("I/O error")),
        "{read:?}"
    );
    let partial = vm.lines_with("TAMPER-PARTIAL ");
    let fields: Vec<&str> = partial[0].split_whitespace().collect();
    let n: usize = fields[0].parse().unwrap();
    assert!(n < victim.len(), "{partial:?}");
    assert_eq!(fields[1], sha(&victim[..n]), "the bytes read are unaltered");
    assert_eq!(vm.lines_with("TAMPER-OTHER "), ["still readable"]);
    let dmesg: u32 = vm.lines_with("TAMPER-DMESG ")[0].parse().unwrap();
    assert!(dmesg >= 1, "dm-verity logged the corruption");
    assert_clean(&vm, "AFTER-TAMPER");

    // 4. Wrong root hash: dm-verity accepts the table; the first read (EROFS's superblock)
    // fails, so the mount fails with EIO and is undone.
    let wr = &vm.lines_with("WRONG-ROOT ")[0];
    assert!(!wr.starts_with("rc=0"), "{wr}");
    assert!(
        wr.contains("mount erofs") && wr.contains("Input/output error"),
        "{wr}"
    );
    assert!(wr.contains(&format!("layer 0 ({})", l0.digest())), "{wr}");
    // The verity target was loaded and saw the mismatch on that first read.
    assert!(wr.contains("dm-verity status \"C\""), "{wr}");
    assert_clean(&vm, "AFTER-WRONG-ROOT");

    // 5. Reference values.
    let refused = &vm.lines_with("REFUSED ")[0];
    assert!(refused.contains("PermissionDenied"), "{refused}");
    assert!(
        refused.contains(&format!("layer 1 ({})", l1.digest()))
            && refused.contains("not in the reference values"),
        "{refused}"
    );
    assert_eq!(vm.lines_with("MAPPER ")[0].trim(), "control");
    assert_clean(&vm, "AFTER-REFUSED");
    let disk_upper = &vm.lines_with("DISK-UPPER ")[0];
    assert!(
        disk_upper.starts_with(
            "rc=14 PermissionDenied: container c1: policy: upper: a scratch-disk upper"
        ),
        "{disk_upper}"
    );
    assert_clean(&vm, "AFTER-DISK-UPPER");
    assert_eq!(vm.lines_with("CONFIDENTIAL-OK "), ["top"]);

    // 6. A disk that never appears.
    let never = &vm.lines_with("NEVER ")[0];
    assert!(never.contains("NotFound"), "{never}");
    assert!(
        never.contains("lp-never") && never.contains("layer 1"),
        "{never}"
    );
    let secs: u64 = vm.lines_with("NEVER-SECONDS ")[0].parse().unwrap();
    assert!(secs >= 2, "waited {secs} s");
    assert_clean(&vm, "AFTER-NEVER");

    // 7. Hot-plug.
    assert_eq!(vm.lines_with("HOTPLUG-MOUNTED "), ["b"]);
    assert_clean(&vm, "FINAL");

    // 8. Without verity.
    let refused = &vm.lines_with("NO-VERITY-REFUSED ")[0];
    assert!(
        refused.contains("PermissionDenied") && refused.contains("no dm-verity parameters"),
        "{refused}"
    );
    assert_clean(&vm, "AFTER-NO-VERITY-REFUSED");
    let raw: Value = serde_json::from_str(&vm.lines_with("NO-VERITY ")[0]).unwrap();
    let raw_layer = &raw["layers"][0];
    assert_eq!(raw_layer["root_hash"], "", "{raw}");
    assert!(
        raw_layer["device"].as_str().unwrap().starts_with("/dev/vd"),
        "{raw}"
    );

    assert_eq!(vm.lines_with("NO-VERITY-FILE "), ["b"]);

    // Event log: one line per layer and container, mounted and unmounted.
    let events: Vec<Value> = vm
        .lines_with("EVENT ")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let c1_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["container_id"] == "c1")
        .collect();
    assert_eq!(
        c1_events.len(),
        12,
        "c1 mounted and unmounted twice: {events:?}"
    );
    let kinds: Vec<&str> = c1_events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds[..6],
        ["mount", "mount", "mount", "unmount", "unmount", "unmount"]
    );
    assert_eq!(c1_events[0]["digest"], l0.digest());
    assert_eq!(c1_events[0]["root_hash"], l0.root_hash());
    assert!(c1_events[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c1_events[0]["mount_point"], "/run/layerpass/rootfs/c1");
    assert_eq!(c1_events[0]["upper"]["kind"], "disk", "{}", c1_events[0]);
    assert_eq!(c1_events[0]["upper"]["serial"], "lp-scratch");
    let verity = &c1_events[0]["verity"];
    assert_eq!(verity["algorithm"], "sha256", "{verity}");
    assert_eq!(verity["on_corruption"], "eio", "{verity}");
    assert_eq!(verity["data_block_size"], 4096, "{verity}");
    let c2_mount = events
        .iter()
        .find(|e| e["container_id"] == "c2" && e["event"] == "mount")
        .unwrap();
    assert_eq!(c2_mount["upper"]["kind"], "tmpfs", "{c2_mount}");
    assert!(
        !events.iter().any(|e| e["container_id"] == "c4"),
        "a failed mount logs nothing"
    );
    drop(guards);
}

/// 128 layers from one composite disk on `kernel`; returns the overlay's `/proc/mounts` line.
fn mount_128_layers(kernel: &assets::Kernel, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host_bin = static_binary("layerpass", "layerpass").unwrap();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();

    let layers: Vec<Layer> = (0..128)
        .map(|i| {
            let t = d.join(format!("t{i}"));
            write(&t, &format!("layers/f{i}"), format!("{i}\n").as_bytes());
            write(&t, "which", format!("{i}\n").as_bytes());
            make_layer(d, &format!("l{i}"), &t)
        })
        .collect();
    let comp_sock = d.join("comp.sock");
    let comp_args: Vec<String> = std::iter::once("--composite".to_owned())
        .chain(
            layers
                .iter()
                .map(|l| format!("{}@{}", l.blob.display(), l.digest())),
        )
        .collect();
    let comp_refs: Vec<&str> = comp_args.iter().map(String::as_str).collect();
    let _comp = serve(&host_bin, &comp_sock, &comp_refs);
    let big: Vec<PlannedLayer> = layers.iter().map(on_part).collect();
    let p = plan("big", &big, tmpfs_upper());
    let script = r#"
r=$($G mount --require-verity --device-timeout 60 --plan /plans/big.json)
echo "FILES $(ls "$r/layers" | wc -l)"
echo "WHICH $(cat "$r/which")"
echo "F127 $(cat "$r/layers/f127")"
echo "OVERLAY $(grep " $r " /proc/mounts)"
leftovers MOUNTED
$G unmount big
leftovers FINAL
"#;
    let initrd = d.join("initrd.gz");
    Initramfs::standard(kernel)
        .unwrap()
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .file("/plans/big.json", &p, 0o644)
        .test_script(&format!("{HELPERS}\n{script}"))
        .write(&initrd)
        .unwrap();
    let mut vm = VmBuilder::new(name, kernel, &initrd)
        .vhost_user_blk(vub(&comp_sock))
        .spawn()
        .unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();
    assert_eq!(vm.lines_with("FILES "), ["128"]);
    assert_eq!(vm.lines_with("WHICH "), ["0"], "the top layer wins");
    assert_eq!(vm.lines_with("F127 "), ["127"]);
    let mounted = counts(&vm.lines_with("MOUNTED ")[0]);
    assert_eq!(mounted[0], ("dm".to_owned(), 128));
    assert_eq!(
        mounted[2],
        ("mounts".to_owned(), 130),
        "128 EROFS, tmpfs, overlay"
    );
    assert_clean(&vm, "FINAL");
    vm.lines_with("OVERLAY ").pop().unwrap()
}

/// Debian 6.1: no `lowerdir+`, so the legacy mount data with short relative paths.
#[test]
fn guest_agent_mounts_128_layers_from_one_composite_disk() {
    if !require_vm_tools() {
        return;
    }
    let kernel = assets::cloud_kernel().unwrap();
    let overlay = mount_128_layers(&kernel, "guest-agent-128");
    if kernel.release.starts_with("6.1.") {
        assert!(overlay.contains("lowerdir=l/0:l/1:"), "{overlay}");
    }
}

/// bookworm-backports' 6.12: the new mount API with one `lowerdir+` per layer.
#[test]
fn guest_agent_mounts_128_layers_with_lowerdir_plus_on_a_newer_kernel() {
    if !require_vm_tools() {
        return;
    }
    let kernel = assets::backports_cloud_kernel().unwrap();
    let overlay = mount_128_layers(&kernel, "guest-agent-128-lowerdir-plus");
    assert!(
        overlay.contains("lowerdir+=/run/layerpass/containers/big/l/0,")
            && overlay.contains("lowerdir+=/run/layerpass/containers/big/l/127,"),
        "{overlay}"
    );
}

/// `layerpass blk serve --queues 2 ARGS` (the guests have 2 vCPUs), socket ready.
fn serve(bin: &Path, socket: &Path, args: &[&str]) -> ChildGuard {
    serve_blk(bin, socket, &[&["--queues", "2"], args].concat()).unwrap()
}

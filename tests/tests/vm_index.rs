//! Index layers (issue #17: an EROFS index over the original tar, served as one verified
//! disk `[META][TAR][zeros][TREE]` with 512-byte logical blocks) in real guests, one boot
//! per kernel: Debian's 6.1 and bookworm-backports' 6.12.
//!
//! Each boot checks, in sequence:
//! - an index layer over a real Debian package tar and one over the edge-case tar mount
//!   through dm-verity (512-byte data blocks) and list exactly as the tar says (type, mode,
//!   uid, gid, size, sha256, link target, mtime, nlink, hard-link groups, xattrs), the
//!   expected tree computed on the host by the writer tests' independent model;
//! - both stacked with full-conversion layers in one overlay (whiteout, opaque directory);
//! - a flipped byte inside one file's data in a copy of the tar (served with the same
//!   META and tree): EIO on that file only, the others read;
//! - containerd's tar-index blob (`mkfs.erofs --tar=i --aufs` 1.8.6 + the tar appended +
//!   `veritysetup format` 512/512 appended, `.dmverity` sidecar) of the edge-case tar
//!   mounts on 6.12 and lists as the tar says, and is refused on 6.1 with the
//!   kernel-version error, before any mount, nothing left behind.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "../../host-agent/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tars::Tar;
use common::walk::{self, Kind, Node, Tree};
use common::{debian, model};
use layerpass::erofs::{ConvertOptions, convert_layer};
use layerpass::plan::{PlannedLayer, Upper};
use layerpass_tests::plans;
use layerpass_tests::tools::{erofs_utils, pseudo_random, require_tool, run, veritysetup_root};
use layerpass_tests::vm::{
    BOOT_TIMEOUT, ChildGuard, Initramfs, TestImage, VhostUserBlk, VmBuilder, VmGuard, assets,
    require_vm_tools, serve_blk, static_binary, static_rustc,
};
use sha2::{Digest, Sha256};

/// The size of the edge tar's big file: not a multiple of any block size.
const BIG: usize = 1_000_003;
/// The Debian package whose data tar is indexed (ELF binaries, symlinks, ~100 files).
const PACKAGE: &str = "coreutils";

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The edge-case tar: whiteout, opaque directory, hard link, symlink, xattrs, a
/// 1 000 003-byte file, an empty file, a path longer than 100 bytes (GNU long name), owners
/// and modes.
fn edge_tar() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("./", 0o755);
    t.file("empty", 0o644, b"");
    t.file("big", 0o644, &pseudo_random(BIG, 17));
    t.entry(
        tar::EntryType::Regular,
        "owned.txt",
        0o640,
        1000,
        1001,
        b"owned\n",
    );
    t.file("hl/a", 0o644, b"hard linked\n");
    t.hardlink("hl/b", "hl/a");
    t.symlink("link", "owned.txt");
    t.pax(&[
        ("SCHILY.xattr.user.foo", b"bar"),
        ("SCHILY.xattr.trusted.t", b"v"),
        (
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ),
    ])
    .file("xattrs/caps", 0o755, b"ping");
    t.file(".wh.gone", 0o644, b"");
    t.dir("opq", 0o755);
    t.file("opq/.wh..wh..opq", 0o644, b"");
    t.file("opq/new", 0o644, b"new\n");
    t.file(
        &format!("{}/{}/long-file", "d".repeat(120), "e".repeat(130)),
        0o644,
        b"long\n",
    );
    t.finish()
}

/// The byte offset of `path`'s data in `tar`.
fn data_offset(tar: &[u8], path: &str) -> u64 {
    let mut ar = tar::Archive::new(tar);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_str() == Some(path) {
            return e.raw_file_position();
        }
    }
    panic!("{path} is not in the tar")
}

/// An index layer made by `layerpass convert layer TAR META --index`.
struct Index {
    meta: PathBuf,
    tar: PathBuf,
    digest: String,
    root: String,
}

impl Index {
    fn make(host_bin: &Path, dir: &Path, name: &str, tar: &[u8]) -> Self {
        let tar_path = dir.join(format!("{name}.tar"));
        fs::write(&tar_path, tar).unwrap();
        let meta = dir.join(format!("{name}.meta"));
        run(Command::new(host_bin)
            .args(["convert", "layer"])
            .arg(&tar_path)
            .arg(&meta)
            .arg("--index"))
        .unwrap();
        Self {
            root: sidecar_root(&meta),
            meta,
            tar: tar_path,
            digest: format!("sha256:{}", sha(tar)),
        }
    }

    /// `META+TAR` as the command line takes it.
    fn layer_arg(&self, tar: &Path) -> String {
        format!("{}+{}", self.meta.display(), tar.display())
    }

    fn planned(&self, tar: &Path, serial: &str) -> PlannedLayer {
        plans::on_disk_spec(
            &format!("{}@{}", self.layer_arg(tar), self.digest),
            serial,
            512,
        )
        .unwrap()
    }
}

/// The root hash in `<file>.dmverity` (containerd's sidecar).
fn sidecar_root(file: &Path) -> String {
    let mut side = file.as_os_str().to_owned();
    side.push(".dmverity");
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&side).unwrap()).unwrap();
    v["roothash"].as_str().unwrap().to_owned()
}

/// A full conversion of the tree given as `(path, content)` pairs.
struct Full {
    blob: PathBuf,
    digest: String,
}

fn full_layer(dir: &Path, name: &str, files: &[(&str, &[u8])], dirs: &[&str]) -> Full {
    let mut t = Tar::new();
    for d in dirs {
        t.dir(d, 0o755);
    }
    for (p, data) in files {
        t.file(p, 0o644, data);
    }
    let tar = t.finish();
    let blob = dir.join(format!("{name}.erofs"));
    let report = convert_layer(&tar[..], &blob, &ConvertOptions::default()).unwrap();
    Full {
        blob,
        digest: report.diff_id,
    }
}

/// containerd's tar-index blob for `tar`: `mkfs.erofs --tar=i --aufs` (erofs-utils ≥ 1.8),
/// the tar appended, then `veritysetup format` 512/512 with the tree appended and the
/// `.dmverity` sidecar, as containerd's differ with `enable_tar_index` lays it out.
/// `None` when a tool is missing and skips are allowed.
fn containerd_tar_index(dir: &Path, tar: &Path) -> Option<(PathBuf, String)> {
    let erofs = erofs_utils::require()?;
    let veritysetup = require_tool("veritysetup", "cryptsetup-bin")?;
    let meta = dir.join("containerd.meta");
    run(erofs
        .command("mkfs.erofs")
        .args(["--tar=i", "--aufs", "--quiet"])
        .arg(&meta)
        .arg(tar))
    .unwrap();
    let blob = dir.join("containerd.erofs");
    let mut out = fs::File::create(&blob).unwrap();
    out.write_all(&fs::read(&meta).unwrap()).unwrap();
    out.write_all(&fs::read(tar).unwrap()).unwrap();
    drop(out);
    let size = fs::metadata(&blob).unwrap().len();
    assert_eq!(size % 512, 0, "[index][tar] is 512-byte aligned");
    let out = run(Command::new(veritysetup)
        .args([
            "format",
            "--hash=sha256",
            "--format=1",
            "--data-block-size=512",
            "--hash-block-size=512",
            &format!("--salt={}", "0".repeat(64)),
            &format!("--hash-offset={size}"),
        ])
        .arg(&blob)
        .arg(&blob))
    .unwrap();
    let root = veritysetup_root(&out.stdout).unwrap();
    fs::write(
        dir.join("containerd.erofs.dmverity"),
        serde_json::json!({ "roothash": root, "hashoffset": size }).to_string(),
    )
    .unwrap();
    Some((blob, root))
}

fn vub(socket: &Path) -> VhostUserBlk {
    VhostUserBlk {
        socket: socket.to_owned(),
        num_queues: Some(2),
        reconnect_ms: None,
    }
}

/// `layerpass blk serve --queues 2 --layer LAYER --serial SERIAL`, socket ready.
fn serve(bin: &Path, socket: &Path, layer: &str, serial: &str) -> ChildGuard {
    serve_blk(
        bin,
        socket,
        &["--queues", "2", "--layer", layer, "--serial", serial],
    )
    .unwrap()
}

/// Where the agent mounts the layer with this root hash.
fn layer_dir(root: &str) -> String {
    format!("/run/layerpass/layers/sha256-{root}")
}

const HELPERS: &str = r#"
G=/bin/layerpass-guest
# listing TAG DIR: lptree's lines and the sha256 of every regular file, tagged.
listing() {
  /bin/lptree "$2" | sed "s/^/$1 /"
  ( cd "$2" && find . -type f | sort | while read -r p; do
      echo "$1 H $(sha256sum < "$p" | cut -d' ' -f1) $p"
    done )
}
# show TAG NAME PATH: "TAG NAME <sha256 of PATH | missing>".
show() {
  if [ -e "$3" ]; then echo "$1 $2 $(sha256sum < "$3" | cut -d' ' -f1)"; else echo "$1 $2 missing"; fi
}
leftovers() {
  dm=$(ls /sys/block | grep -c '^dm-' || true)
  mapper=$(ls /dev/mapper | grep -vc '^control$' || true)
  mnt=$(grep -c ' /run/layerpass/' /proc/mounts || true)
  lay=$(ls /run/layerpass/layers 2>/dev/null | wc -l)
  echo "$1 dm=$dm mapper=$mapper mounts=$mnt layers=$lay"
}
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

/// The guest's script: `@EDGE@`, `@DEB@`, `@CTD@` are the layers' mount directories.
const SCRIPT: &str = r#"
echo "KERNEL $(uname -r) $(uname -v)"
for d in $(ls /sys/block | grep '^vd'); do echo "LBS $(cat /sys/block/$d/serial) $(cat /sys/block/$d/queue/logical_block_size)"; done

# 1. The stack: full top, edge index, Debian index, full bottom.
r=$($G mount --require-verity --plan /plans/stack.json)
listing EDGE @EDGE@
listing DEB @DEB@
for p in top.txt lower-only gone opq/old opq/new big bin/ls; do show MERGED $p "$r/$p"; done
leftovers STACKED
$G unmount stack
leftovers AFTER-STACK

# 2. The tampered copy of the edge tar: EIO on big only.
r=$($G mount --require-verity --plan /plans/tamper.json)
if cat "$r/big" > /dev/null 2>/tmp/big.err; then echo "TAMPER-BIG ok"; else echo "TAMPER-BIG failed $(cat /tmp/big.err)"; fi
for p in owned.txt hl/b empty opq/new xattrs/caps; do show TAMPERED $p "$r/$p"; done
echo "TAMPER-LONG $(cat "$r"/ddd*/eee*/long-file)"
echo "TAMPER-DMESG $(dmesg | grep -c 'verity.*corrupted' || true)"
$G unmount tamper
leftovers AFTER-TAMPER

# 3. containerd's tar index.
expect_fail CTD $G mount --require-verity --plan /plans/containerd.json
if [ -d @CTD@ ]; then
  listing CTDL @CTD@
  $G unmount containerd
fi
leftovers FINAL
"#;

/// Parses the guest's `N` and `H` lines (tag removed) into a tree.
fn guest_tree(lines: &[String]) -> Tree {
    let unhex = |s: &str| hex::decode(s).unwrap();
    let mut tree = Tree::new();
    let mut inos: BTreeMap<u64, String> = BTreeMap::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        if let Some(h) = l.strip_prefix("H ") {
            let (hash, path) = h.split_once(' ').unwrap();
            hashes.insert(path.trim_start_matches("./").to_owned(), hash.to_owned());
            continue;
        }
        let f: Vec<&str> = l.strip_prefix("N ").unwrap().split(' ').collect();
        assert_eq!(f.len(), 14, "{l}");
        let path = if f[0] == "-" {
            String::new()
        } else {
            String::from_utf8(unhex(f[0])).unwrap()
        };
        let num = |i: usize| f[i].parse::<u64>().unwrap();
        let (major, minor) = (num(10) as u32, num(11) as u32);
        let kind = match f[1] {
            "d" => Kind::Dir,
            "f" => Kind::Reg {
                size: num(9),
                sha256: String::new(),
            },
            "l" => Kind::Symlink(unhex(f[12])),
            "c" => Kind::Char(major, minor),
            "b" => Kind::Block(major, minor),
            "p" => Kind::Fifo,
            other => panic!("type {other} in {l}"),
        };
        let xattrs = if f[13] == "-" {
            BTreeMap::new()
        } else {
            f[13]
                .split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (unhex(k), unhex(v))
                })
                .collect()
        };
        let link_group =
            (kind != Kind::Dir).then(|| inos.entry(num(8)).or_insert_with(|| path.clone()).clone());
        tree.insert(
            path,
            Node {
                kind,
                perm: u32::from_str_radix(f[2], 8).unwrap(),
                uid: num(3) as u32,
                gid: num(4) as u32,
                mtime: (num(5) as i64, num(6) as u32),
                nlink: num(7) as u32,
                xattrs,
                link_group,
            },
        );
    }
    for (p, n) in &mut tree {
        if let Kind::Reg { sha256, .. } = &mut n.kind {
            *sha256 = hashes
                .get(p)
                .unwrap_or_else(|| panic!("no hash for {p}"))
                .clone();
        }
    }
    walk::canonical_groups(&mut tree);
    tree
}

/// The `key=value` pairs of a `leftovers` line.
fn counts(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn assert_clean(vm: &VmGuard, label: &str) {
    let lines = vm.lines_with(&format!("{label} "));
    assert_eq!(lines.len(), 1, "{label}: {lines:?}");
    for (k, v) in counts(&lines[0]) {
        assert_eq!(v, 0, "{label}: {k} left behind: {}", lines[0]);
    }
}

/// Everything of one boot on `kernel`; `flatdev` says whether containerd's tar index must
/// mount (6.4 and later) or be refused.
fn index_layers_on(kernel: &assets::Kernel, name: &str, flatdev: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host_bin = static_binary("layerpass", "layerpass").unwrap();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();
    let lptree = static_rustc("lptree").unwrap();
    let Some(deb_tar) = debian::data_tar(PACKAGE) else {
        return;
    };

    // Layers: the two index layers, the tampered copy, two full conversions, containerd's.
    let edge_bytes = edge_tar();
    let edge = Index::make(&host_bin, d, "edge", &edge_bytes);
    let deb = Index::make(&host_bin, d, "deb", &deb_tar);
    let tampered = d.join("edge-tampered.tar");
    fs::copy(&edge.tar, &tampered).unwrap();
    let flip_at = data_offset(&edge_bytes, "big") + 500_000;
    {
        let f = fs::OpenOptions::new().write(true).open(&tampered).unwrap();
        let byte = [edge_bytes[flip_at as usize] ^ 0x01];
        f.write_all_at(&byte, flip_at).unwrap();
    }
    let top = full_layer(d, "top", &[("top.txt", b"top\n")], &[]);
    let lower = full_layer(
        d,
        "lower",
        &[
            ("lower-only", b"lower\n"),
            ("gone", b"whited out\n"),
            ("opq/old", b"hidden by the opaque directory\n"),
        ],
        &["opq"],
    );
    let Some((ctd_blob, ctd_root)) = containerd_tar_index(d, &edge.tar) else {
        return;
    };

    // Disks: one per layer.
    let mut guards = Vec::new();
    let mut socks = Vec::new();
    let disks: [(&str, String); 6] = [
        ("lp-top", top.blob.display().to_string()),
        ("lp-edge", edge.layer_arg(&edge.tar)),
        ("lp-deb", deb.layer_arg(&deb.tar)),
        ("lp-lower", lower.blob.display().to_string()),
        ("lp-tamper", edge.layer_arg(&tampered)),
        ("lp-ctd", ctd_blob.display().to_string()),
    ];
    for (serial, layer) in &disks {
        let sock = d.join(format!("{serial}.sock"));
        guards.push(serve(&host_bin, &sock, layer, serial));
        socks.push(sock);
    }

    // Plans, by the host's plan builder.
    let full = |l: &Full, serial: &str| plans::on_disk(&l.blob, &l.digest, serial).unwrap();
    let tmpfs = || Upper::Tmpfs {
        size_bytes: 16 << 20,
    };
    let ctd_digest = edge.digest.clone();
    let plans = [
        (
            "stack",
            vec![
                full(&top, "lp-top"),
                edge.planned(&edge.tar, "lp-edge"),
                deb.planned(&deb.tar, "lp-deb"),
                full(&lower, "lp-lower"),
            ],
        ),
        ("tamper", vec![edge.planned(&tampered, "lp-tamper")]),
        (
            "containerd",
            vec![
                plans::on_disk_spec(
                    &format!("{}@{ctd_digest}", ctd_blob.display()),
                    "lp-ctd",
                    512,
                )
                .unwrap(),
            ],
        ),
    ];
    let ctd_verity = plans[2].1[0].verity.as_ref().unwrap();
    assert_eq!(
        (ctd_verity.data_block_size, ctd_verity.hash_block_size),
        (512, 512),
        "the plan carries containerd's block sizes"
    );
    let edge_verity = plans[0].1[1].verity.as_ref().unwrap();
    assert_eq!(
        (edge_verity.data_block_size, edge_verity.hash_block_size),
        (512, 4096),
        "index layers: 512-byte data blocks, 4096-byte hash blocks"
    );

    let script = SCRIPT
        .replace("@EDGE@", &layer_dir(&edge.root))
        .replace("@DEB@", &layer_dir(&deb.root))
        .replace("@CTD@", &layer_dir(&ctd_root));
    let initrd = d.join("initrd.gz");
    let mut image = Initramfs::standard(kernel).unwrap();
    image
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .host_file("/bin/lptree", &lptree, 0o755);
    for (id, layers) in &plans {
        let p = plans::plan_json(id, layers, tmpfs()).unwrap();
        image.file(&format!("/plans/{id}.json"), &p, 0o644);
    }
    image
        .test_script(&format!("{HELPERS}\n{script}"))
        .write(&initrd)
        .unwrap();
    let mut builder = VmBuilder::new(name, kernel, &initrd).memory_mib(1024);
    for s in &socks {
        builder = builder.vhost_user_blk(vub(s));
    }
    let mut vm = builder.spawn().unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();
    let kernel_line = vm.lines_with("KERNEL ").pop().unwrap();

    // Index disks advertise 512-byte logical blocks; full layers keep 4096.
    let lbs: BTreeMap<String, String> = vm
        .lines_with("LBS ")
        .iter()
        .map(|l| {
            let (s, b) = l.split_once(' ').unwrap();
            (s.to_owned(), b.to_owned())
        })
        .collect();
    for serial in ["lp-edge", "lp-deb", "lp-tamper", "lp-ctd"] {
        assert_eq!(lbs.get(serial).map(String::as_str), Some("512"), "{lbs:?}");
    }

    // 1. Every file of both index layers as the tar says.
    let want = model::expected(&edge_bytes, 0).tree;
    walk::assert_same(
        &format!("edge tar on {kernel_line}"),
        &want,
        &guest_tree(&vm.lines_with("EDGE ")),
        &[],
    );
    let deb_want = model::expected(&deb_tar, 0).tree;
    assert!(deb_want.len() > 50, "{} paths in {PACKAGE}", deb_want.len());
    walk::assert_same(
        &format!("{PACKAGE} on {kernel_line}"),
        &deb_want,
        &guest_tree(&vm.lines_with("DEB ")),
        &[],
    );
    // The overlay of full and index layers.
    let merged = shown(&vm, "MERGED ");
    let Some(Node {
        kind: Kind::Reg { sha256: ls, .. },
        ..
    }) = deb_want.get("bin/ls")
    else {
        panic!("{PACKAGE} has no bin/ls")
    };
    let want_merged = [
        ("top.txt", sha(b"top\n")),
        ("lower-only", sha(b"lower\n")),
        ("gone", "missing".to_owned()),
        ("opq/old", "missing".to_owned()),
        ("opq/new", sha(b"new\n")),
        ("big", sha(&pseudo_random(BIG, 17))),
        ("bin/ls", ls.clone()),
    ];
    for (p, h) in &want_merged {
        assert_eq!(merged.get(*p), Some(h), "merged {p}: {merged:?}");
    }
    let stacked = counts(&vm.lines_with("STACKED ")[0]);
    assert_eq!(stacked[0], ("dm".to_owned(), 4), "{stacked:?}");
    assert_clean(&vm, "AFTER-STACK");

    // 2. The flipped byte: EIO on big, the other files read.
    let big = &vm.lines_with("TAMPER-BIG ")[0];
    assert!(
        big.starts_with("failed")
            && (big.contains("Input/output error") || big.contains("I/O error")),
        "{big}"
    );
    let tampered = shown(&vm, "TAMPERED ");
    for (p, data) in [
        ("owned.txt", &b"owned\n"[..]),
        ("hl/b", b"hard linked\n"),
        ("empty", b""),
        ("opq/new", b"new\n"),
        ("xattrs/caps", b"ping"),
    ] {
        assert_eq!(tampered.get(p), Some(&sha(data)), "tampered layer {p}");
    }
    assert_eq!(vm.lines_with("TAMPER-LONG "), ["long"]);
    let dmesg: u32 = vm.lines_with("TAMPER-DMESG ")[0].parse().unwrap();
    assert!(dmesg >= 1, "dm-verity logged the corruption");
    assert_clean(&vm, "AFTER-TAMPER");

    // 3. containerd's tar index.
    let ctd = &vm.lines_with("CTD ")[0];
    if flatdev {
        assert!(ctd.starts_with("rc=0 "), "{ctd}");
        // mkfs.erofs gives directories the tar did not list its own build time.
        let got = guest_tree(&vm.lines_with("CTDL "));
        let model::Expected {
            mut tree,
            implicit_dirs,
        } = model::expected(&edge_bytes, 0);
        for p in &implicit_dirs {
            if let (Some(w), Some(g)) = (tree.get_mut(p), got.get(p)) {
                w.mtime = g.mtime;
            }
        }
        walk::assert_same(
            &format!("containerd's tar index on {kernel_line}"),
            &tree,
            &got,
            &[],
        );
    } else {
        for want in [
            "FailedPrecondition",
            "mount erofs",
            "cannot be mounted by this kernel",
            "1 extra device(s)",
            "needs Linux 6.4 or later (flatdev)",
            &format!("root hash {ctd_root}"),
        ] {
            assert!(ctd.contains(want), "{want:?} not in {ctd}");
        }
        assert!(vm.lines_with("CTDL ").is_empty());
    }
    assert_clean(&vm, "FINAL");
    eprintln!(
        "vm_index {name}: guest ran {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    drop(guards);
}

/// The guest's `TAG NAME VALUE` lines (`show`) as NAME → VALUE.
fn shown(vm: &VmGuard, tag: &str) -> BTreeMap<String, String> {
    vm.lines_with(tag)
        .iter()
        .map(|l| {
            let (p, h) = l.split_once(' ').unwrap();
            (p.to_owned(), h.to_owned())
        })
        .collect()
}

/// Debian's 6.1 (≥ 6.1.113: 512-byte EROFS blocks, no flatdev): our index layers mount,
/// containerd's tar index is refused with the kernel-version error.
#[test]
fn index_layers_on_debian_6_1() {
    if !require_vm_tools() {
        return;
    }
    let kernel = assets::cloud_kernel().unwrap();
    index_layers_on(&kernel, "index-6.1", false);
}

/// bookworm-backports' 6.12: everything mounts, containerd's tar index too.
#[test]
fn index_layers_on_backports_6_12() {
    if !require_vm_tools() {
        return;
    }
    let kernel = assets::backports_cloud_kernel().unwrap();
    index_layers_on(&kernel, "index-6.12", true);
}

//! The tar index (`layerpass convert layer TAR OUT --index`): metadata whose files point
//! into the tar. Mounted with the host kernel from a *copy* of `META‖TAR` (the product
//! never concatenates; the served disk is assembled from extents), the tree must equal
//! the full writer's image of the same tar in every attribute; `veritysetup verify`
//! must accept the tree over that copy and refuse it after one flipped tar byte; the
//! tar is never modified; what the limits refuse leaves nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on unexpected failures

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tars::Tar;
use common::{corpus, debian, mount::Mount, tools, walk};
use layerpass::erofs::index::{IndexInfo, IndexOptions, IndexReport, index_layer, tree_path_for};
use layerpass::erofs::{ConvertOptions, ErofsError, convert_layer};
use layerpass::verity::{Sidecar, sidecar_path};
use layerpass_test_support::counted;
use tar::EntryType;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// What the index has beyond the generated corpus: a file of 1 000 003 bytes (many
/// blocks, a short last block) with xattrs before its chunk index, an empty file, hard
/// links to both, a symlink target longer than one 512-byte block (stored in the
/// metadata's data area), a long path, a whiteout and an opaque directory.
fn edge_tar() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("./", 0o755);
    t.pax(&[
        ("SCHILY.xattr.user.big", b"yes"),
        ("SCHILY.xattr.trusted.x", b"\x00\x01"),
    ])
    .file("data/big", 0o640, &pattern(1_000_003, 7));
    t.file("data/empty", 0o600, b"");
    t.file("data/511", 0o644, &pattern(511, 1));
    t.file("data/512", 0o644, &pattern(512, 2));
    t.file("data/513", 0o644, &pattern(513, 3));
    t.hardlink("data/big-link", "data/big");
    t.hardlink("data/empty-link", "data/empty");
    t.symlink("links/long", &format!("/{}", "s".repeat(1200)));
    t.symlink("links/short", "../data/big");
    let long = format!("{}/{}/leaf", "p".repeat(150), "q".repeat(200));
    t.file(&long, 0o644, b"long path");
    t.file("etc/.wh.gone", 0o644, b"");
    t.dir("opaque", 0o755);
    t.file("opaque/.wh..wh..opq", 0o644, b"");
    t.file("opaque/kept", 0o644, b"kept");
    t.device(EntryType::Char, "dev/null", 1, 3);
    t.device(EntryType::Block, "dev/loop9", 7, 9);
    t.entry(EntryType::Fifo, "dev/fifo", 0o600, 0, 0, b"");
    t.finish()
}

fn index(tar: &Path, out: &Path) -> IndexReport {
    index_layer(tar, out, &IndexOptions::default()).unwrap()
}

/// A copy of `[META][TAR][zeros to 4096]`: the served disk's data part.
fn flat_copy(r: &IndexReport, dir: &Path) -> PathBuf {
    let p = dir.join(format!(
        "{}.flat",
        r.meta.file_name().unwrap().to_string_lossy()
    ));
    let mut f = File::create(&p).unwrap();
    f.write_all(&fs::read(&r.meta).unwrap()).unwrap();
    f.write_all(&fs::read(&r.tar).unwrap()).unwrap();
    f.set_len(r.hash_offset).unwrap();
    p
}

/// Indexes `tar` and converts it fully; both mounted trees must be identical.
fn compare(name: &str, tar: &[u8], dir: &Path) {
    let tar_path = dir.join(format!("{name}.tar"));
    fs::write(&tar_path, tar).unwrap();
    let meta = dir.join(format!("{name}.meta"));
    let r = index(&tar_path, &meta);
    assert_eq!(r.meta_bytes % 512, 0);
    assert_eq!(fs::metadata(&meta).unwrap().len(), r.meta_bytes);
    assert_eq!(r.tar_bytes, tar.len() as u64);
    // superblock `blocks` = metadata and tar blocks; no device table
    let info = IndexInfo::read(&meta).unwrap();
    assert_eq!(info.meta_bytes, r.meta_bytes);
    assert_eq!(
        info.tar_len_padded(),
        r.tar_bytes.next_multiple_of(512),
        "{name}: superblock blocks"
    );
    assert_eq!(info.extra_devices, 0);
    let full = dir.join(format!("{name}.erofs"));
    convert_layer(tar, &full, &ConvertOptions::default()).unwrap();
    let flat = flat_copy(&r, dir);
    let m_full = Mount::erofs(&full);
    let m_index = Mount::erofs(&flat);
    let want = walk::walk(m_full.path());
    let got = walk::walk(m_index.path());
    walk::assert_same(&format!("{name}: full image vs index"), &want, &got, &[]);
    drop((m_full, m_index));
    // the full writer's image is not an index
    assert!(matches!(
        IndexInfo::read(&full),
        Err(ErofsError::NotAnIndex { .. })
    ));
    if let Some(erofs) = tools::erofs_utils::require() {
        tools::run(erofs.command("fsck.erofs").arg(&flat));
    }
    fs::remove_file(&flat).unwrap();
}

#[test]
fn an_index_mounts_as_the_full_writers_image() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tars = corpus::all();
    tars.push(("binary_xattr", corpus::binary_xattr()));
    tars.push(("edge", edge_tar()));
    for (name, tar) in &tars {
        compare(name, tar, dir.path());
    }
    counted::compared(tars.len(), 6, "index trees identical to the full writer's");
}

#[test]
fn an_index_over_debian_package_tars_mounts_as_the_full_writers_image() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for pkg in ["tzdata", "coreutils"] {
        let Some(tar) = debian::data_tar(pkg) else {
            return;
        };
        compare(pkg, &tar, dir.path());
        compared += 1;
    }
    counted::compared(compared, 2, "Debian package index trees identical to full");
}

fn root_hash(r: &IndexReport) -> String {
    Sidecar::read(&sidecar_path(&r.meta)).unwrap().roothash
}

#[test]
fn the_same_tar_gives_the_same_bytes_and_the_tar_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("layer.tar");
    let tar = edge_tar();
    fs::write(&tar_path, &tar).unwrap();
    let old = filetime(&tar_path);
    // an mtime in the past, so that a write would show
    let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    File::options()
        .write(true)
        .open(&tar_path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    assert_ne!(filetime(&tar_path), old);
    let a = index(&tar_path, &dir.path().join("a"));
    let b = index(&tar_path, &dir.path().join("b"));
    assert_eq!(fs::read(&a.meta).unwrap(), fs::read(&b.meta).unwrap());
    assert_eq!(fs::read(&a.tree).unwrap(), fs::read(&b.tree).unwrap());
    assert_eq!(a.root_hash, b.root_hash);
    assert_eq!(root_hash(&a), a.root_hash);
    let side = Sidecar::read(&sidecar_path(&a.meta)).unwrap();
    assert_eq!(
        side.hashoffset,
        (a.meta_bytes + a.tar_bytes).next_multiple_of(4096)
    );
    assert_eq!(a.tree, tree_path_for(&a.meta));
    assert_eq!(fs::read(&tar_path).unwrap(), tar, "the tar's bytes changed");
    assert_eq!(
        fs::metadata(&tar_path).unwrap().modified().unwrap(),
        past,
        "the tar's mtime changed"
    );
    // bytes written: metadata, tree, sidecar; none of the tar
    assert!(a.bytes_written < a.meta_bytes + a.tree_bytes + 4096);
    assert!(a.bytes_written >= a.meta_bytes + a.tree_bytes);
}

fn filetime(p: &Path) -> std::time::SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn a_compressed_layer_is_decompressed_once_into_out_tar() {
    let dir = tempfile::tempdir().unwrap();
    let tar = edge_tar();
    let plain = dir.path().join("layer.tar");
    fs::write(&plain, &tar).unwrap();
    let p = index(&plain, &dir.path().join("plain"));
    for (name, bytes) in [
        ("gz", common::tars::gzip(&tar)),
        ("zst", common::tars::zstd(&tar)),
    ] {
        let input = dir.path().join(format!("layer.tar.{name}"));
        fs::write(&input, &bytes).unwrap();
        let out = dir.path().join(name);
        let r = index(&input, &out);
        assert_eq!(r.tar, dir.path().join(format!("{name}.tar")));
        assert_eq!(fs::read(&r.tar).unwrap(), tar, "{name}: OUT.tar");
        assert_eq!(fs::read(&r.meta).unwrap(), fs::read(&p.meta).unwrap());
        assert_eq!(r.root_hash, p.root_hash, "{name}");
        assert_eq!(r.bytes_written, p.bytes_written + tar.len() as u64);
        assert_eq!(fs::read(&input).unwrap(), bytes);
    }
}

fn assert_nothing_at(out: &Path) {
    for p in [
        out.to_owned(),
        tree_path_for(out),
        sidecar_path(out),
        layerpass::erofs::index::tar_path_for(out),
    ] {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    let dir = out.parent().unwrap();
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".layerpass-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn a_tar_that_ends_early_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = edge_tar();
    // inside the big file's content, and inside a header
    for cut in [tar.len() / 3, 1024 + 100] {
        let p = dir.path().join("short.tar");
        fs::write(&p, &tar[..cut]).unwrap();
        let out = dir.path().join("out");
        let e = index_layer(&p, &out, &IndexOptions::default()).unwrap_err();
        assert!(
            matches!(e, ErofsError::Truncated { .. } | ErofsError::Tar { .. }),
            "cut at {cut}: {e:?}"
        );
        assert_nothing_at(&out);
    }
    // compressed: the copy into OUT.tar is removed too
    let p = dir.path().join("short.tar.gz");
    fs::write(&p, common::tars::gzip(&tar[..tar.len() / 3])).unwrap();
    let out = dir.path().join("gz");
    let e = index_layer(&p, &out, &IndexOptions::default()).unwrap_err();
    assert!(matches!(e, ErofsError::Truncated { .. }), "{e:?}");
    assert_nothing_at(&out);
    // a gzip stream that ends early (decompressed on a thread of its own)
    let gz = common::tars::gzip(&tar);
    fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let e = index_layer(&p, &out, &IndexOptions::default()).unwrap_err();
    assert!(
        matches!(e, ErofsError::Decompress { format: "gzip", .. }),
        "{e:?}"
    );
    assert_nothing_at(&out);
}

/// A header whose (base-256) size field claims `size` bytes.
fn claiming(size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("huge").unwrap();
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    let field = &mut h.as_old_mut().size;
    field.fill(0);
    field[0] = 0x80;
    field[4..].copy_from_slice(&size.to_be_bytes());
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
fn a_header_claiming_more_than_2_tib_is_refused_before_its_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("claims.tar");
    // 1 MiB of zeros after the header (sparse): far less than claimed
    let mut f = File::create(&p).unwrap();
    f.write_all(&claiming((2 << 40) + 1)).unwrap();
    f.set_len(1 << 20).unwrap();
    let out = dir.path().join("out");
    let e = index_layer(&p, &out, &IndexOptions::default()).unwrap_err();
    assert!(
        matches!(e, ErofsError::TarTooLarge { bytes } if bytes > 2 << 40),
        "{e:?}"
    );
    assert!(e.to_string().contains("2 TiB"), "{e}");
    assert_nothing_at(&out);
    // exactly 2 TiB of tar is not refused by the header (it ends early instead)
    let mut f = File::create(&p).unwrap();
    f.write_all(&claiming((2 << 40) - 512)).unwrap();
    f.set_len(1 << 20).unwrap();
    let e = index_layer(&p, &out, &IndexOptions::default()).unwrap_err();
    assert!(matches!(e, ErofsError::Truncated { .. }), "{e:?}");
}

#[test]
fn a_tar_file_larger_than_2_tib_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.tar");
    let f = File::create(&p).unwrap();
    let mut t = Tar::new();
    t.file("a", 0o644, b"a");
    f.write_all_at(&t.finish(), 0).unwrap();
    // sparse: no data blocks
    f.set_len((2 << 40) + 512).unwrap();
    let out = dir.path().join("out");
    // (read, it would stop at the 64 GiB max-layer-bytes instead)
    let e = index_layer(&p, &out, &IndexOptions::default()).unwrap_err();
    assert!(matches!(e, ErofsError::TarTooLarge { .. }), "{e:?}");
    assert_nothing_at(&out);
    // the limits of the full writer apply
    let small = dir.path().join("small.tar");
    fs::write(&small, edge_tar()).unwrap();
    let opts = IndexOptions {
        max_layer_bytes: 100_000,
        ..IndexOptions::default()
    };
    let e = index_layer(&small, &out, &opts).unwrap_err();
    assert!(
        matches!(e, ErofsError::LayerTooLarge { limit: 100_000 }),
        "{e:?}"
    );
    let opts = IndexOptions {
        max_entries: 3,
        ..IndexOptions::default()
    };
    let e = index_layer(&small, &out, &opts).unwrap_err();
    assert!(
        matches!(e, ErofsError::TooManyEntries { limit: 3 }),
        "{e:?}"
    );
    assert_nothing_at(&out);
}

#[test]
fn veritysetup_verifies_the_tree_and_refuses_a_flipped_tar_byte() {
    let Some(veritysetup) = tools::require_tool("veritysetup", "cryptsetup-bin") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("layer.tar");
    let tar = edge_tar();
    fs::write(&tar_path, &tar).unwrap();
    let r = index(&tar_path, &dir.path().join("meta"));
    let flat = flat_copy(&r, dir.path());
    let verify = |data: &Path| {
        Command::new(&veritysetup)
            .arg("verify")
            .arg(data)
            .arg(&r.tree)
            .arg(&r.root_hash)
            .output()
            .unwrap()
    };
    let ok = verify(&flat);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // the superblock veritysetup reads gives the geometry of the issue
    let dump = tools::run(Command::new(&veritysetup).arg("dump").arg(&r.tree));
    let dump = String::from_utf8_lossy(&dump.stdout);
    let squeezed: String = dump.split_whitespace().collect();
    for want in [
        "Datablocksize:512".to_owned(),
        "Hashblocksize:4096".to_owned(),
        format!("Datablocks:{}", r.hash_offset / 512),
    ] {
        assert!(squeezed.contains(&want), "{want:?} not in {dump}");
    }
    // one byte in the big file's content, in the copy
    let f = File::options().read(true).write(true).open(&flat).unwrap();
    let at = r.meta_bytes + tar.len() as u64 / 2;
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();
    drop(f);
    let bad = verify(&flat);
    assert!(!bad.status.success(), "a flipped tar byte was accepted");
}

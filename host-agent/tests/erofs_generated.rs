//! Generated tars covering every rule, converted (plain, gzip, zstd), checked by
//! `fsck.erofs`, mounted with the host kernel and compared entry by entry with what the
//! tar says; converted twice to check reproducibility.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::fs;
use std::path::Path;

use common::{corpus, model, mount::Mount, tars, tools, walk};
use layerpass::erofs::{ConvertOptions, convert_layer};
use layerpass::verity::{Sidecar, sidecar_path};

fn check_layer(name: &str, tar: &[u8], dir: &Path) {
    let out = dir.join(format!("{name}.erofs"));
    let report = convert_layer(tar, &out, &ConvertOptions::default()).unwrap();
    assert_eq!(report.erofs_size % 4096, 0);
    assert_eq!(fs::metadata(&out).unwrap().len(), report.blob_size);
    let sidecar = Sidecar::read(&sidecar_path(&out)).unwrap();
    assert_eq!(Some(sidecar.roothash.clone()), report.root_hash);
    assert_eq!(Some(sidecar.hashoffset), report.hash_offset);
    assert_eq!(report.hash_offset, Some(report.erofs_size));
    tools::fsck(&out);

    if name == "basic" {
        // five files share an xattr: the shared area exists
        let img = fs::read(&out).unwrap();
        let xattr_blkaddr = u32::from_le_bytes(img[1024 + 44..1024 + 48].try_into().unwrap());
        assert_ne!(xattr_blkaddr, 0, "no shared xattr area");
    }
    let want = model::expected(tar, 0);
    let m = Mount::erofs(&out);
    walk::assert_same(name, &want.tree, &walk::walk(m.path()), &[]);
}

#[test]
fn generated_tars_mount_as_the_tar_says() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, tar) in corpus::all() {
        check_layer(name, &tar, dir.path());
    }
}

#[test]
fn gzip_and_zstd_layers_give_the_same_image_and_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let tar = corpus::basic();
    let opts = ConvertOptions::default();
    let plain = convert_layer(&tar[..], &dir.path().join("p.erofs"), &opts).unwrap();
    let gz = convert_layer(&tars::gzip(&tar)[..], &dir.path().join("g.erofs"), &opts).unwrap();
    let zst = convert_layer(&tars::zstd(&tar)[..], &dir.path().join("z.erofs"), &opts).unwrap();
    use sha2::Digest;
    assert_eq!(
        plain.diff_id,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)))
    );
    for r in [&gz, &zst] {
        assert_eq!(r.diff_id, plain.diff_id);
        assert_eq!(r.root_hash, plain.root_hash);
        assert_eq!(fs::read(&r.path).unwrap(), fs::read(&plain.path).unwrap());
    }
}

#[test]
fn converting_twice_gives_identical_bytes_and_root_hash() {
    let dir = tempfile::tempdir().unwrap();
    for (name, tar) in corpus::all() {
        let a = convert_layer(
            &tar[..],
            &dir.path().join("a.erofs"),
            &ConvertOptions::default(),
        )
        .unwrap();
        let b = convert_layer(
            &tar[..],
            &dir.path().join("b.erofs"),
            &ConvertOptions::default(),
        )
        .unwrap();
        assert_eq!(a.root_hash, b.root_hash, "{name}");
        assert_eq!(
            fs::read(&a.path).unwrap(),
            fs::read(&b.path).unwrap(),
            "{name}"
        );
        assert_eq!(
            fs::read(sidecar_path(&a.path)).unwrap(),
            fs::read(sidecar_path(&b.path)).unwrap()
        );
    }
}

#[test]
fn mkfs_time_sets_the_build_time_and_implicit_dir_mtimes() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = corpus::whiteouts();
    let out = dir.path().join("t.erofs");
    let opts = ConvertOptions {
        no_verity: true,
        mkfs_time: Some(1_234_567),
        ..ConvertOptions::default()
    };
    let r = convert_layer(&tar[..], &out, &opts).unwrap();
    assert_eq!(
        (r.root_hash, r.hash_offset, r.blob_size),
        (None, None, r.erofs_size)
    );
    assert!(!sidecar_path(&out).exists());
    let img = fs::read(&out).unwrap();
    assert_eq!(
        u64::from_le_bytes(img[1024 + 24..1024 + 32].try_into().unwrap()),
        1_234_567
    );
    tools::fsck(&out);
    let want = model::expected(&tar, 1_234_567);
    let m = Mount::erofs(&out);
    walk::assert_same(
        "whiteouts at build time 1234567",
        &want.tree,
        &walk::walk(m.path()),
        &[],
    );
}

#[test]
fn replaced_file_contents_do_not_linger() {
    let dir = tempfile::tempdir().unwrap();
    let tar = corpus::normalisation();
    let r = convert_layer(
        &tar[..],
        &dir.path().join("n.erofs"),
        &ConvertOptions::default(),
    )
    .unwrap();
    let img = fs::read(&r.path).unwrap();
    let needle = b"old content that will be zeroed";
    assert!(!img.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn binary_xattr_values_with_newlines_survive() {
    if !tools::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.erofs");
    convert_layer(
        &corpus::binary_xattr()[..],
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    tools::fsck(&out);
    let m = Mount::erofs(&out);
    let x = walk::xattrs(&m.path().join("bin/tool"));
    assert_eq!(
        x.get(&b"security.capability"[..]).map(Vec::as_slice),
        Some(corpus::BINARY_CAP)
    );
    assert_eq!(
        x.get(&b"user.blob"[..]).map(Vec::as_slice),
        Some(corpus::BINARY_BLOB)
    );
}

#[test]
fn convert_layer_blob_equals_add_verity_on_its_image() {
    // the blob is exactly the EROFS image with add_verity's layout appended
    let dir = tempfile::tempdir().unwrap();
    for (name, tar) in corpus::all() {
        let out = dir.path().join(format!("{name}.erofs"));
        let r = convert_layer(&tar[..], &out, &ConvertOptions::default()).unwrap();
        let blob = fs::read(&out).unwrap();
        let copy = dir.path().join(format!("{name}.copy.erofs"));
        fs::write(&copy, &blob[..r.erofs_size as usize]).unwrap();
        let again =
            layerpass::erofs::add_verity(&copy, &copy, layerpass::erofs::verity_uuid(&r.diff_id))
                .unwrap();
        assert_eq!(Some(again.root_hash), r.root_hash, "{name}");
        assert_eq!(fs::read(&copy).unwrap(), blob, "{name}: blob bytes");
    }
}

/// The tree is hashed while the image is written (a thread follows the writer through
/// progress reports, mid-file and between files); on a layer of several MiB it must be
/// byte for byte what `veritysetup format` makes of the finished image.
#[test]
fn same_pass_tree_equals_veritysetup_on_a_multi_megabyte_layer() {
    use std::process::Command;
    let Some(veritysetup) = tools::require_tool("veritysetup", "cryptsetup-bin") else {
        return;
    };
    let mut t = tars::Tar::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // replaced at the end: its blocks are zeroed after the hashing thread has seen them
    t.file("again", 0o600, &noise(2 * 1024 * 1024));
    t.file("big", 0o644, &noise(5 * 1024 * 1024 + 123));
    for i in 0..400 {
        let n = [1, 4095, 4096, 4097, 9000][i % 5];
        t.file(&format!("d{}/f{i}", i % 7), 0o644, &noise(n));
    }
    t.file("again", 0o644, &noise(3 * 1024 * 1024 + 5));
    let tar = t.finish();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("l.erofs");
    let r = convert_layer(&tar[..], &out, &ConvertOptions::default()).unwrap();
    assert!(r.erofs_size > 10 << 20, "{}", r.erofs_size);
    let blob = fs::read(&out).unwrap();
    let copy = dir.path().join("copy.erofs");
    fs::write(&copy, &blob[..r.erofs_size as usize]).unwrap();
    let uuid = layerpass::erofs::verity_uuid(&r.diff_id).to_string();
    let text = tools::run(
        Command::new(&veritysetup)
            .args(["format", "--salt", &"00".repeat(32), "--uuid", &uuid])
            .arg(format!("--hash-offset={}", r.erofs_size))
            .arg(&copy)
            .arg(&copy),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    let root = r.root_hash.clone().unwrap();
    assert!(
        text.contains(&root),
        "veritysetup says:\n{text}\nwe say {root}"
    );
    assert!(
        fs::read(&copy).unwrap() == blob,
        "tree bytes differ from veritysetup's"
    );
    // and the directory holds nothing but the blob, its sidecar and the copy
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["copy.erofs", "l.erofs", "l.erofs.dmverity"]);
}

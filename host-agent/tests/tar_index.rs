//! Tar-index layers as disks: containerd's `enable_tar_index` blobs (erofs-utils ≥ 1.8
//! `mkfs.erofs --tar=i --aufs`, the tar appended, `veritysetup format` 512/512 appended,
//! the `.dmverity` sidecar) are served as they are, at 512-byte logical blocks, and
//! `layerpass plan` maps them at 512/512; the served disk verifies with veritysetup.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tars::Tar;
use common::tools::{erofs_utils, require_tool, run};
use layerpass::export::Disk;
use layerpass::export::layer::LayerDisk;
use layerpass::verity::{Sidecar, sidecar_path};
use vm_memory::VolatileSlice;

fn small_tar() -> Vec<u8> {
    let big: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
    let mut t = Tar::new();
    t.dir("d", 0o755)
        .file("d/a", 0o644, b"hello\n")
        .file("big", 0o600, &big)
        .file("empty", 0o644, b"");
    t.finish()
}

/// The whole disk, written to `path` (a file veritysetup can read).
fn served_bytes(disk: &dyn Disk, path: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; disk.size() as usize];
    disk.read_at(0, &[VolatileSlice::from(buf.as_mut_slice())])
        .unwrap();
    fs::write(path, &buf).unwrap();
    buf
}

/// `veritysetup verify DATA HASH ROOT --hash-offset=OFFSET` (superblock at the offset).
fn veritysetup_verify(veritysetup: &Path, disk: &Path, offset: u64, root: &str) -> bool {
    Command::new(veritysetup)
        .arg("verify")
        .arg(disk)
        .arg(disk)
        .arg(root)
        .arg(format!("--hash-offset={offset}"))
        .output()
        .unwrap()
        .status
        .success()
}

/// containerd's differ with `enable_tar_index = true`: `[index][tar]`, verity 512/512
/// appended, sidecar. Returns the blob and its root hash.
fn containerd_tar_index_blob(dir: &Path, tar: &[u8]) -> Option<(PathBuf, String, u64)> {
    let erofs = erofs_utils::require()?;
    let veritysetup = require_tool("veritysetup", "cryptsetup-bin")?;
    let tar_path = dir.join("layer.tar");
    fs::write(&tar_path, tar).unwrap();
    let meta = dir.join("meta.erofs");
    run(erofs
        .command("mkfs.erofs")
        .args(["--tar=i", "--aufs", "--quiet"])
        .arg(&meta)
        .arg(&tar_path));
    let blob = dir.join("layer.erofs");
    let mut bytes = fs::read(&meta).unwrap();
    bytes.extend_from_slice(tar);
    fs::write(&blob, &bytes).unwrap();
    let offset = bytes.len() as u64;
    let out = run(Command::new(&veritysetup)
        .args(["format", "--data-block-size=512", "--hash-block-size=512"])
        .arg(format!("--hash-offset={offset}"))
        .arg(&blob)
        .arg(&blob));
    let text = String::from_utf8_lossy(&out.stdout);
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_owned();
    Sidecar {
        roothash: root.clone(),
        hashoffset: offset,
    }
    .write(&sidecar_path(&blob))
    .unwrap();
    Some((blob, root, offset))
}

#[test]
fn containerd_tar_index_blobs_are_served_at_512_byte_blocks_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let Some((blob, root, offset)) = containerd_tar_index_blob(dir.path(), &small_tar()) else {
        return;
    };
    let Some(veritysetup) = require_tool("veritysetup", "cryptsetup-bin") else {
        return;
    };
    let disk = LayerDisk::open(&blob, None, None).unwrap();
    assert_eq!(disk.logical_block_size(), 512);
    let image = dir.path().join("served.img");
    let served = served_bytes(&disk, &image);
    let file = fs::read(&blob).unwrap();
    assert_eq!(&served[..file.len()], file.as_slice());
    assert!(served[file.len()..].iter().all(|&b| b == 0));
    assert!(veritysetup_verify(&veritysetup, &image, offset, &root));

    // `layerpass plan` maps it at 512/512 on a 512-byte disk (refused at 4096)
    for extra in [&[][..], &["--composite", "lp-composite"][..]] {
        let blob = blob.to_str().unwrap();
        let v = planned_verity(&[extra, &[blob]].concat());
        assert_eq!((v.data_block_size, v.hash_block_size), (512, 512));
        assert_eq!(v.data_blocks, offset / 512);
        assert_eq!(v.hash_start_block, offset / 512 + 1);
        assert_eq!(hex::encode(&v.root_hash), root);
    }
}

/// `layerpass convert layer TAR META --index`, then META+TAR served: the disk is
/// META‖TAR‖zeros‖TREE at 512-byte blocks, verifies with veritysetup under the sidecar's
/// root hash, and `layerpass plan` maps it at 512/4096; the tar referenced in place inside
/// a larger file (`#OFFSET`) gives the same disk; the tar is never modified.
#[test]
fn an_index_layer_is_served_from_its_files() {
    let Some(veritysetup) = require_tool("veritysetup", "cryptsetup-bin") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tar = small_tar();
    let tar_path = dir.path().join("layer.tar");
    fs::write(&tar_path, &tar).unwrap();
    let mtime = fs::metadata(&tar_path).unwrap().modified().unwrap();
    let meta = dir.path().join("idx.erofs");
    run(Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["convert", "layer"])
        .arg(&tar_path)
        .arg(&meta)
        .arg("--index"));
    let sidecar = Sidecar::read(&sidecar_path(&meta)).unwrap();
    let meta_bytes = fs::read(&meta).unwrap();
    let tree_bytes = fs::read(layerpass::export::layer::index_tree_path(&meta)).unwrap();
    let pad = |mut b: Vec<u8>| {
        b.resize(b.len().div_ceil(4096) * 4096, 0);
        b
    };
    let mut expected = meta_bytes.clone();
    expected.extend_from_slice(&tar);
    let mut expected = pad(expected);
    assert_eq!(expected.len() as u64, sidecar.hashoffset);
    expected.extend(pad(tree_bytes));

    // the same tar inside a larger file, referenced at its offset
    let archive = dir.path().join("archive.tar");
    let mut a = vec![0x11u8; 3 * 512];
    a.extend_from_slice(&tar);
    a.extend_from_slice(&[0u8; 1024]);
    fs::write(&archive, &a).unwrap();

    let specs = [
        format!("{}+{}", meta.display(), tar_path.display()),
        format!("{}+{}#1536", meta.display(), archive.display()),
    ];
    for spec in &specs {
        let disk = layerpass::export::spec::LayerFileSpec::parse(spec)
            .unwrap()
            .layer_disk(None)
            .unwrap();
        assert_eq!(disk.logical_block_size(), 512);
        let image = dir.path().join("served.img");
        assert!(served_bytes(&disk, &image) == expected, "{spec}");
        assert!(
            veritysetup_verify(&veritysetup, &image, sidecar.hashoffset, &sidecar.roothash),
            "{spec}"
        );
        // one flipped byte in the tar region fails verification
        let mut bad = fs::read(&image).unwrap();
        bad[meta_bytes.len() + 600] ^= 1;
        fs::write(&image, &bad).unwrap();
        assert!(!veritysetup_verify(
            &veritysetup,
            &image,
            sidecar.hashoffset,
            &sidecar.roothash
        ));

        let v = planned_verity(&[spec.as_str()]);
        assert_eq!((v.data_block_size, v.hash_block_size), (512, 4096));
        assert_eq!(v.data_blocks, sidecar.hashoffset / 512);
        assert_eq!(v.hash_start_block, sidecar.hashoffset / 4096 + 1);
        assert_eq!(hex::encode(&v.root_hash), sidecar.roothash);
    }
    assert_eq!(fs::read(&tar_path).unwrap(), tar);
    assert_eq!(fs::metadata(&tar_path).unwrap().modified().unwrap(), mtime);
}

/// `layerpass plan --container c1 ARGS`, parsed by the guest agent's own reader: the
/// verity parameters of the first layer.
fn planned_verity(args: &[&str]) -> layerpass_protocols::v1::guest::VerityParams {
    let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["plan", "--container", "c1"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req = layerpass_protocols::json::parse_mount_request(&String::from_utf8_lossy(&out.stdout))
        .unwrap();
    req.layers[0].verity.clone().unwrap()
}

/// Runs `layerpass blk serve --socket S ARGS` until its socket exists, stops it with
/// SIGTERM, and returns what it logged.
fn blk_serve_log(dir: &Path, args: &[&str]) -> String {
    let socket = dir.join("blk.sock");
    let _ = fs::remove_file(&socket);
    let mut child = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["blk", "serve", "--socket"])
        .arg(&socket)
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "blk serve exited with {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no socket within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SIGTERM: a graceful stop, after everything it logs on the way up
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signalling the child this test started and has not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `blk serve --layer META+TAR` and `--composite` with an index layer advertise 512-byte
/// logical blocks; a layer whose tar is the wrong one is refused before serving.
#[test]
fn blk_serve_takes_index_layers() {
    let dir = tempfile::tempdir().unwrap();
    let tar = small_tar();
    let tar_path = dir.path().join("layer.tar");
    fs::write(&tar_path, &tar).unwrap();
    let meta = dir.path().join("idx.erofs");
    run(Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["convert", "layer"])
        .arg(&tar_path)
        .arg(&meta)
        .arg("--index"));
    let spec = format!("{}+{}", meta.display(), tar_path.display());
    for args in [
        &["--layer", spec.as_str()][..],
        &["--composite", spec.as_str()],
    ] {
        let log = blk_serve_log(dir.path(), args);
        assert!(log.contains("logical_block_size=512"), "{log}");
    }
    // a tar shorter than the index addresses
    let short = dir.path().join("short.tar");
    fs::write(&short, &tar[..tar.len() / 2 / 512 * 512]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["blk", "serve", "--socket"])
        .arg(dir.path().join("x.sock"))
        .arg("--layer")
        .arg(format!("{}+{}", meta.display(), short.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("short.tar") && err.contains("truncated"),
        "{err}"
    );
}

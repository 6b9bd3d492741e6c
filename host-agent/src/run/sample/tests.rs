//! The sample image: it opens with the image reader, its layers and diff ids are right, it
//! is reproducible, it converts, and (as root) its three converted EROFS layers stacked
//! under overlayfs give the tree the layers describe.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::layers::{DATA_LEN, data_bin};
use super::tarball::{MTIME, sha256_digest};
use super::*;
use crate::convert::{ImageConvertOptions, OutputLayout, convert_image};
use crate::image::{Compression, open_image, read_config};
use crate::run::process::{image_runtime, process_spec};

/// sha256 of `/usr/share/sample/data.bin`: pinned, so that a change of the generator shows.
const DATA_SHA256: &str = "12cc80faa3575122fe937c6fe171ea03f229063728c383afb41ab72e633c13bb";

/// The busybox binary of Debian's busybox-static, or `None` (skip allowed) when missing.
fn busybox() -> Option<PathBuf> {
    layerpass_test_support::tools::require_tool("busybox", "busybox-static")
}

/// A sample image written into a fresh temporary directory.
fn sample() -> Option<(TempDir, SampleImage)> {
    let bb = busybox()?;
    let tmp = tempfile::tempdir().unwrap();
    let img = write_sample_image(&bb, &tmp.path().join("sample")).unwrap();
    Some((tmp, img))
}

/// Every tar entry of a layer: path → (type, mode, uid, gid, link target, size).
type Entries = BTreeMap<String, (tar::EntryType, u32, u64, u64, Option<String>, u64)>;

fn entries(tar_bytes: &[u8]) -> (Vec<String>, Entries) {
    let mut order = Vec::new();
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        assert_eq!(h.mtime().unwrap(), MTIME, "{path}");
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        order.push(path.clone());
        out.insert(
            path,
            (
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                link,
                h.size().unwrap(),
            ),
        );
    }
    (order, out)
}

/// The uncompressed tars of the image's layers, bottom first, read through the reader.
fn layer_tars(dir: &Path) -> Vec<Vec<u8>> {
    let image = open_image(dir, None).unwrap();
    image
        .layers
        .iter()
        .map(|l| {
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(l.open().unwrap())
                .read_to_end(&mut tar)
                .unwrap();
            tar
        })
        .collect()
}

#[test]
fn opens_with_three_gzip_layers_and_their_diff_ids() {
    let Some((_tmp, img)) = sample() else { return };
    assert_eq!(img.layers, 3);
    let image = open_image(&img.dir, None).unwrap();
    assert_eq!(image.layers.len(), 3);
    assert_eq!(
        image.manifest_digest.as_ref().map(ToString::to_string),
        Some(img.manifest_digest.clone())
    );
    let tars = layer_tars(&img.dir);
    for (l, tar) in image.layers.iter().zip(&tars) {
        assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(l.compression, Compression::Gzip);
        assert_eq!(
            l.diff_id.to_string(),
            sha256_digest(tar),
            "layer {}",
            l.index
        );
    }
    let platform = image.platform.unwrap();
    assert_eq!(
        (platform.os.as_str(), platform.arch.as_str()),
        ("linux", "amd64")
    );
}

#[test]
fn layers_hold_what_they_demonstrate() {
    let Some((_tmp, img)) = sample() else { return };
    let tars = layer_tars(&img.dir);
    let [base, adds, changes] = [&tars[0], &tars[1], &tars[2]].map(|t| entries(t));
    for (order, _) in [&base, &adds, &changes] {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, &sorted, "entries are sorted");
    }
    let base = base.1;
    let (kind, mode, ..) = &base["bin/busybox"];
    assert_eq!((*kind, *mode), (tar::EntryType::Regular, 0o755));
    let (kind, _, _, _, link, _) = &base["bin/sh"];
    assert_eq!(
        (*kind, link.as_deref()),
        (tar::EntryType::Symlink, Some("busybox"))
    );
    assert!(base.contains_key("bin/ls") && base.contains_key("bin/cat"));
    assert_eq!(base["home/user"].2, 1000);
    assert_eq!(base["home/user"].3, 1000);
    assert_eq!(base["tmp"].1, 0o1777);
    assert_eq!(base["root"].1, 0o700);
    for d in ["proc", "sys", "dev", "usr/bin", "etc/layerpass"] {
        assert_eq!(base[d].0, tar::EntryType::Directory, "{d}");
    }
    for f in [
        "etc/os-release",
        "etc/passwd",
        "etc/group",
        "etc/layerpass/removed",
    ] {
        assert_eq!(base[f].0, tar::EntryType::Regular, "{f}");
    }
    assert!(
        base.contains_key("usr/share/sample/old/a") && base.contains_key("usr/share/sample/old/b")
    );
    assert!(base.values().all(|e| e.2 == 0 || e.2 == 1000));

    let adds = adds.1;
    assert_eq!(adds["usr/bin/hello"].1, 0o755);
    assert_eq!(adds["usr/share/sample/data.bin"].5, DATA_LEN as u64);
    let (kind, _, _, _, link, _) = &adds["usr/share/sample/data.link"];
    assert_eq!(
        (*kind, link.as_deref()),
        (tar::EntryType::Link, Some("usr/share/sample/data.bin"))
    );
    assert!(adds.contains_key("etc/motd") && adds.contains_key("etc/layerpass/added"));

    let changes = changes.1;
    assert!(changes.contains_key("etc/layerpass/.wh.removed"));
    assert!(changes.contains_key("usr/share/sample/old/.wh..wh..opq"));
    assert!(changes.contains_key("usr/share/sample/old/c"));
}

#[test]
fn data_bin_is_pinned_and_has_no_repeated_block() {
    let data = data_bin();
    assert_eq!(data.len(), DATA_LEN);
    assert_eq!(hex::encode(Sha256::digest(&data)), DATA_SHA256);
    let mut blocks: Vec<&[u8]> = data.chunks(32).collect();
    blocks.sort_unstable();
    blocks.dedup();
    assert_eq!(blocks.len(), DATA_LEN / 32);
}

#[test]
fn reproducible() {
    let Some(bb) = busybox() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let a = write_sample_image(&bb, &tmp.path().join("a")).unwrap();
    let b = write_sample_image(&bb, &tmp.path().join("b")).unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(d.join("blobs/sha256"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v.push(("index.json".into(), fs::read(d.join("index.json")).unwrap()));
        v
    };
    assert_eq!(files(&a.dir), files(&b.dir));
    // layers + config + manifest
    assert_eq!(files(&a.dir).len(), 3 + 1 + 1 + 1);
}

#[test]
fn target_must_be_missing_or_empty_and_no_temp_dir_is_left() {
    let Some(bb) = busybox() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    write_sample_image(&bb, &empty).unwrap();
    let e = write_sample_image(&bb, &empty).unwrap_err();
    assert!(
        matches!(&e, RunError::NotEmpty { path } if path == &empty),
        "{e:?}"
    );
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        write_sample_image(&bb, &file),
        Err(RunError::NotEmpty { .. })
    ));
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "file"]);
    let nested = tmp.path().join("x/y/sample");
    write_sample_image(&bb, &nested).unwrap();
    assert!(nested.join("index.json").is_file());
}

#[test]
fn missing_busybox_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e =
        write_sample_image(Path::new("/nonexistent/busybox"), &tmp.path().join("s")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/busybox"), "{e}");
    assert!(!tmp.path().join("s").exists());
}

#[test]
fn config_runs_cat_os_release() {
    let Some((_tmp, img)) = sample() else { return };
    let image = open_image(&img.dir, None).unwrap();
    let config = read_config(&image).unwrap();
    assert_eq!(sha256_digest(&config), image.config_digest.to_string());
    let rt = image_runtime(&config).unwrap();
    assert!(rt.entrypoint.is_empty() && rt.user.is_none());
    let p = process_spec(&rt, &[], &[], None, None).unwrap();
    assert_eq!(p.args, ["cat", "/etc/os-release"]);
    assert_eq!(p.cwd, "/home/user");
    assert!(p.env.contains(&"LAYERPASS_SAMPLE=1".to_owned()));
}

/// Converts the sample image to EROFS blobs in containerd's cache layout.
fn convert(img: &SampleImage, out: &Path) -> Vec<PathBuf> {
    let opts = ImageConvertOptions::new(OutputLayout::ContainerdCache, out);
    let report = convert_image(&img.dir, &opts, &|_| {}).unwrap();
    assert_eq!(report.layers.len(), 3);
    report.layers.iter().map(|l| l.path.clone()).collect()
}

#[test]
fn converts_to_three_erofs_layers() {
    let Some((tmp, img)) = sample() else { return };
    let blobs = convert(&img, &tmp.path().join("cache"));
    for b in &blobs {
        assert!(fs::metadata(b).unwrap().len() > 0, "{}", b.display());
    }
}

/// A kernel mount, unmounted on drop (also when the test panics).
struct Mounted {
    dir: TempDir,
}

impl Mounted {
    fn new(args: &[&str], source: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(args)
            .arg(source)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {args:?} {source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// As root: the converted layers, mounted with the host kernel's EROFS (file-backed) and
/// stacked under overlayfs, give the merged tree the three layers describe.
#[test]
fn converted_layers_stack_under_overlayfs() {
    if !layerpass_test_support::tools::require_root("mounting EROFS and overlayfs") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run this as root"
        );
        return;
    }
    let Some((tmp, img)) = sample() else { return };
    let blobs = convert(&img, &tmp.path().join("cache"));
    let layers: Vec<Mounted> = blobs
        .iter()
        .map(|b| Mounted::new(&["-t", "erofs", "-o", "ro"], &b.display().to_string()))
        .collect();
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|m| m.path().display().to_string())
        .collect();
    let merged = Mounted::new(
        &[
            "-t",
            "overlay",
            "-o",
            &format!("ro,lowerdir={}", lower.join(":")),
        ],
        "overlay",
    );
    let root = merged.path();

    let gone = fs::symlink_metadata(root.join("etc/layerpass/removed")).unwrap_err();
    assert_eq!(gone.kind(), std::io::ErrorKind::NotFound, "whiteout");
    assert_eq!(
        fs::read(root.join("etc/layerpass/added")).unwrap(),
        b"added by layer 2\n"
    );
    let mut old: Vec<String> = fs::read_dir(root.join("usr/share/sample/old"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    old.sort();
    assert_eq!(old, ["c"], "opaque directory");
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let data = fs::read(root.join("usr/share/sample/data.bin")).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&data)), DATA_SHA256);
    let bin = fs::metadata(root.join("usr/share/sample/data.bin")).unwrap();
    let link = fs::metadata(root.join("usr/share/sample/data.link")).unwrap();
    assert_eq!(bin.ino(), link.ino(), "hard link");
    assert_eq!(bin.nlink(), 2);
    let home = fs::metadata(root.join("home/user")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert!(
        fs::read_to_string(root.join("etc/os-release"))
            .unwrap()
            .contains("ID=layerpass-sample\n")
    );

    // the busybox of the image runs a script of the image
    let out = Command::new("chroot")
        .arg(root)
        .arg("/usr/bin/hello")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello from a verified layer\n");
    drop(merged);
    drop(layers);
}

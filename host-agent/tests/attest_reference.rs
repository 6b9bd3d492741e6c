//! `layerpass attest reference-values`: root hashes computed from layers alone.
//!
//! - `--as containerd` gives, for real Debian package layers, the root hash of running
//!   mkfs.erofs (erofs-utils ≥ 1.8) with containerd's arguments and `veritysetup format`
//!   with containerd's options on the same tar, on the differ path (UUID from the
//!   compressed digest) and the cache path (UUID from the diff ID);
//! - a small checked-in layer has a fixed expected root hash per path, for the
//!   erofs-utils version it was recorded with (checked first);
//! - `--as layerpass` gives what `layerpass convert` writes;
//! - `--format initdata` prints the digest `sha256sum` gives, and `attest initdata` agrees.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;
mod image_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{debian, tools};
use layerpass::attest::ReferenceError;
use layerpass::attest::containerd::{ContainerdPath, erofs_uuid};
use layerpass::attest::mkfs::MkfsErofs;
use layerpass::attest::reference::{Builder, Input, ReferenceReport, compute};
use layerpass::convert::{ImageConvertOptions, OutputLayout, convert_image};
use layerpass_test_support::counted;
use layerpass_test_support::erofs_utils;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The checked-in layer: a gzip tar (directories, files, a symlink, a hard link, a whiteout
/// and an opaque directory), 672 bytes.
const SMALL: &str = "tests/data/attest-small.tar.gz";
/// The erofs-utils version the expected root hashes below hold for.
const SMALL_VERSION: &str = "1.8.6";
/// Its root hashes under containerd's differ (UUID from the gzip's digest) and cache (UUID
/// from the diff ID) paths, recorded with `scripts/erofs-utils-trixie mkfs.erofs` 1.8.6 and
/// `veritysetup format` (see `containerd_reference`).
const SMALL_DIFFER: &str = "df45be88718960a5faa5806d2942ce62b54de6bd95dbf4c47c55de663d3e7f88";
const SMALL_CACHE: &str = "977651c5fc6683c674a9b04ebd647fa4883dd84b3553e6fa3136557387fdb320";
const SMALL_DIGEST: &str =
    "sha256:0fe9cfbb58bc9caaca825278e70bce685b06541b415a5b212829b7a4701254d4";
const SMALL_DIFF_ID: &str =
    "sha256:3555f1b7e86187e67e2808af5d555b2e077baae70389a802ed70ced1f0ec3ae8";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn small() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SMALL)
}

/// containerd's mkfs.erofs and veritysetup's root hash, or `None` (skip policy).
fn tools_or_skip() -> Option<(MkfsErofs, PathBuf)> {
    let utils = erofs_utils::require()?;
    let veritysetup = tools::require_tool("veritysetup", "cryptsetup-bin")?;
    let mkfs = MkfsErofs::default_tool().unwrap();
    assert_eq!(mkfs.version(), utils.version(), "the project's erofs-utils");
    Some((mkfs, veritysetup))
}

/// What containerd would do, by hand: the UUID from `uuid_digest` (v5, URL namespace,
/// `erofs:blobs/<digest>`), mkfs.erofs with the differ's arguments reading `tar` on stdin,
/// then `veritysetup format` with go-dmverity's parameters (sha256, format 1, 4096/4096,
/// 32 zero bytes of salt, superblock at the end of the image).
fn containerd_reference(veritysetup: &Path, tar: &[u8], uuid_digest: &str) -> String {
    let uuid = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("erofs:blobs/{uuid_digest}").as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("layer.tar");
    std::fs::write(&tar_path, tar).unwrap();
    let blob = dir.path().join("layer.erofs");
    let utils = erofs_utils::require().unwrap();
    tools::run(
        utils
            .command("mkfs.erofs")
            .args([
                "--tar=f",
                "--aufs",
                "--quiet",
                "-Enoinline_data",
                "-b4096",
                "-T0",
                "--mkfs-time",
                "--sort=none",
                "-U",
            ])
            .arg(uuid.to_string())
            .arg(&blob)
            .stdin(std::fs::File::open(&tar_path).unwrap()),
    );
    let size = std::fs::metadata(&blob).unwrap().len();
    let out = tools::run(
        Command::new(veritysetup)
            .args([
                "format",
                "--hash=sha256",
                "--format=1",
                "--data-block-size=4096",
                "--hash-block-size=4096",
                &format!("--salt={}", "0".repeat(64)),
                &format!("--hash-offset={size}"),
            ])
            .arg(&blob)
            .arg(&blob),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .expect("veritysetup prints the root hash")
        .trim()
        .to_owned()
}

fn containerd(mkfs: &MkfsErofs, path: ContainerdPath) -> Builder {
    Builder::Containerd {
        mkfs: mkfs.clone(),
        path,
    }
}

fn layers(files: &[PathBuf], builder: &Builder) -> Result<ReferenceReport, ReferenceError> {
    compute(&Input::Layers(files.to_vec()), builder, None, &|_, _| {})
}

#[test]
fn containerd_root_hashes_of_debian_layers_match_mkfs_erofs_and_veritysetup() {
    let Some((mkfs, veritysetup)) = tools_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut tars = Vec::new();
    for (i, pkg) in ["coreutils", "tzdata", "python3.11-minimal"]
        .into_iter()
        .enumerate()
    {
        let Some(tar) = debian::data_tar(pkg) else {
            return;
        };
        // one layer compressed, as a registry serves it: its digest is not its diff ID
        let (name, stored) = if i == 0 {
            (format!("{pkg}.tar.gz"), common::tars::gzip(&tar))
        } else {
            (format!("{pkg}.tar"), tar.clone())
        };
        let p = dir.path().join(name);
        std::fs::write(&p, &stored).unwrap();
        files.push(p);
        tars.push((pkg, tar, stored));
    }
    let mut compared = 0;
    for path in [ContainerdPath::Differ, ContainerdPath::Cache] {
        let report = layers(&files, &containerd(&mkfs, path)).unwrap();
        for ((pkg, tar, stored), l) in tars.iter().zip(&report.layers) {
            let (digest, diff_id) = (sha256(stored), sha256(tar));
            assert_eq!(
                (l.digest.as_str(), l.diff_id.as_str()),
                (&*digest, &*diff_id)
            );
            let uuid_digest = match path {
                ContainerdPath::Differ => &digest,
                ContainerdPath::Cache => &diff_id,
            };
            assert_eq!(
                l.erofs_uuid.as_deref(),
                Some(erofs_uuid(uuid_digest).to_string().as_str())
            );
            let want = containerd_reference(&veritysetup, tar, uuid_digest);
            assert_eq!(l.root_hash, want, "{pkg} {path:?}");
            compared += 1;
        }
    }
    // the paths differ exactly where the digest is not the diff ID (the gzip layer)
    counted::compared(
        compared,
        6,
        "root hashes of Debian layers equal mkfs.erofs + veritysetup (differ and cache paths)",
    );
}

#[test]
fn the_checked_in_layer_has_its_recorded_root_hashes() {
    let Some((mkfs, _)) = tools_or_skip() else {
        return;
    };
    assert_eq!(
        mkfs.version(),
        SMALL_VERSION,
        "the expected root hashes of {SMALL} hold for erofs-utils {SMALL_VERSION}: record \
         them again for this version (the test `containerd_reference` shows how)"
    );
    let bytes = std::fs::read(small()).unwrap();
    assert_eq!(sha256(&bytes), SMALL_DIGEST, "{SMALL} changed");
    for (path, want) in [
        (ContainerdPath::Differ, SMALL_DIFFER),
        (ContainerdPath::Cache, SMALL_CACHE),
    ] {
        let r = layers(&[small()], &containerd(&mkfs, path)).unwrap();
        let l = &r.layers[0];
        assert_eq!(l.root_hash, want, "{path:?}");
        assert_eq!(
            (l.digest.as_str(), l.diff_id.as_str()),
            (SMALL_DIGEST, SMALL_DIFF_ID)
        );
        assert_eq!(l.hash_offset, 24576);
        assert_eq!(l.salt, "0".repeat(64));
    }
}

#[test]
fn uuid_golden_vector_and_the_digest_each_path_uses() {
    assert_eq!(
        erofs_uuid("sha256:deadbeef").to_string(),
        "ebc0b188-5b2a-52e0-b4a0-21a192556101"
    );
    let Some((mkfs, _)) = tools_or_skip() else {
        return;
    };
    let differ = layers(&[small()], &containerd(&mkfs, ContainerdPath::Differ)).unwrap();
    let cache = layers(&[small()], &containerd(&mkfs, ContainerdPath::Cache)).unwrap();
    assert_eq!(
        differ.layers[0].erofs_uuid.as_deref(),
        Some(erofs_uuid(SMALL_DIGEST).to_string().as_str())
    );
    assert_eq!(
        cache.layers[0].erofs_uuid.as_deref(),
        Some(erofs_uuid(SMALL_DIFF_ID).to_string().as_str())
    );
}

#[test]
fn as_layerpass_equals_layerpass_convert() {
    use image_support::{OciDir, three_layers};
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    oci.write_index(vec![
        oci.image(&three_layers("attest"), Some("linux/amd64")),
    ]);
    let converted = convert_image(
        &layout,
        &ImageConvertOptions::new(OutputLayout::Flat, dir.path().join("out")),
        &|_| {},
    )
    .unwrap();
    let builder = Builder::Layerpass { mkfs_time: 0 };
    let input = Input::Image {
        path: layout.clone(),
        platform: None,
    };
    let report = compute(&input, &builder, Some(dir.path()), &|_, _| {}).unwrap();
    assert_eq!(report.layers.len(), 3);
    for (c, r) in converted.layers.iter().zip(&report.layers) {
        assert_eq!(r.root_hash, c.root_hash.to_string());
        assert_eq!((&r.diff_id, &r.digest), (&c.diff_id, &c.digest));
        assert_eq!(r.hash_offset, c.hash_offset);
    }
    // nothing left behind in the scratch directory
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    // the layer files alone give the same root hashes (compressed or not)
    let files: Vec<PathBuf> = converted
        .layers
        .iter()
        .map(|l| oci.blob_path(&serde_json::json!({ "digest": l.digest.to_string() })))
        .collect();
    let from_files = layers(&files, &builder).unwrap();
    for (a, b) in report.layers.iter().zip(&from_files.layers) {
        assert_eq!((&a.root_hash, &a.digest), (&b.root_hash, &b.digest));
    }
    // another build time, another root hash
    let later = layers(&files[..1], &Builder::Layerpass { mkfs_time: 1 }).unwrap();
    assert_ne!(later.layers[0].root_hash, report.layers[0].root_hash);
}

#[test]
fn unreadable_layers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tar.gz");
    let mut gz = std::fs::read(small()).unwrap();
    gz.truncate(gz.len() / 2);
    std::fs::write(&bad, &gz).unwrap();
    let e = layers(
        &[small(), bad.clone()],
        &Builder::Layerpass { mkfs_time: 0 },
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("layer 1") && msg.contains("bad.tar.gz"),
        "{msg}"
    );
    let e = layers(&[], &Builder::Layerpass { mkfs_time: 0 }).unwrap_err();
    assert!(matches!(e, ReferenceError::NoLayers));
    if let Some((mkfs, _)) = tools_or_skip() {
        let e = layers(&[bad], &containerd(&mkfs, ContainerdPath::Differ)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("bad.tar.gz") && msg.contains("decompress"),
            "{msg}"
        );
    }
}

/// Runs the `layerpass` binary; returns stdout and stderr.
fn layerpass(args: &[&str]) -> (String, String) {
    let out = tools::run(Command::new(env!("CARGO_BIN_EXE_layerpass")).args(args));
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `<tool> FILE`'s hex digest.
fn sum(tool: &str, file: &Path) -> String {
    let out = tools::run(Command::new(tool).arg(file));
    String::from_utf8(out.stdout).unwrap()[..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn initdata_digest_is_what_sha_sums_give() {
    let dir = tempfile::tempdir().unwrap();
    let s = small();
    for (alg, tool) in [
        ("sha256", "sha256sum"),
        ("sha384", "sha384sum"),
        ("sha512", "sha512sum"),
    ] {
        let file = dir.path().join(format!("{alg}.toml"));
        let (_, err) = layerpass(&[
            "attest",
            "reference-values",
            "--layers",
            s.to_str().unwrap(),
            "--format",
            "initdata",
            "--algorithm",
            alg,
            "-o",
            file.to_str().unwrap(),
        ]);
        let want = sum(tool, &file);
        assert!(
            err.contains(&format!("initdata digest: {alg}:{want}")),
            "{err}"
        );
        let (out, _) = layerpass(&["attest", "initdata", file.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["digest"].as_str(), Some(want.as_str()));
        assert_eq!(v["algorithm"].as_str(), Some(alg));
        assert_eq!(v["reference_values"].as_u64(), Some(1));
        assert_eq!(v["tee_fields"][0]["value"].as_str(), Some(&want[..64]));
        // the guest agent reads the reference values from it
        let text = std::fs::read(&file).unwrap();
        let found = layerpass_guest::policy::initdata::parse(&text, "test").unwrap();
        assert_eq!(found.reference_values.len(), 1);
    }
    // the document must name the algorithm asked for
    let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["attest", "initdata"])
        .arg(dir.path().join("sha384.toml"))
        .args(["--algorithm", "sha256"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not sha256"));
}

/// The same layers at another path give the same bytes: the document's digest does not
/// depend on the machine.
#[test]
fn output_does_not_depend_on_where_the_layers_are() {
    let dir = tempfile::tempdir().unwrap();
    let moved = dir.path().join("elsewhere.tgz");
    std::fs::copy(small(), &moved).unwrap();
    let doc = |p: &Path| {
        layerpass(&[
            "attest",
            "reference-values",
            "--layers",
            p.to_str().unwrap(),
            "--format",
            "initdata",
        ])
        .0
    };
    assert_eq!(doc(&small()), doc(&moved));
}

/// `kata-config/initdata/`: the example is real output for the checked-in layer, and the
/// attestation-agent fragment is the one the command writes.
#[test]
fn kata_config_initdata_example_is_current() {
    use layerpass::attest::render::AA_TOML;
    use layerpass_types::initdata::{AA_KEY, Initdata};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kata-config/initdata");
    let raw = std::fs::read(root.join("initdata.toml")).unwrap();
    let doc = Initdata::parse(&raw).unwrap();
    assert_eq!(doc.get(AA_KEY), Some(AA_TOML));
    assert_eq!(
        std::fs::read_to_string(root.join("aa.toml")).unwrap(),
        AA_TOML
    );
    let found = layerpass_guest::policy::initdata::parse(&raw, "example").unwrap();
    assert!(
        found
            .reference_values
            .check(SMALL_DIFFER, SMALL_DIFF_ID)
            .is_ok()
    );
    // and it is what the command writes today
    if let Some((_, _)) = tools_or_skip() {
        let (out, _) = layerpass(&[
            "attest",
            "reference-values",
            "--as",
            "containerd",
            "--layers",
            small().to_str().unwrap(),
            "--format",
            "initdata",
        ]);
        assert_eq!(out.trim_end(), String::from_utf8(raw).unwrap().trim_end());
    }
}

/// An image whose config names another diff ID than its layer's tar, or whose layer blob
/// was altered, gives no reference values, whichever builder.
#[test]
fn tampered_images_give_no_reference_values() {
    use image_support::{OciDir, three_layers};
    let mkfs = tools_or_skip();
    let builders: Vec<Builder> = std::iter::once(Builder::Layerpass { mkfs_time: 0 })
        .chain(
            mkfs.iter()
                .map(|(m, _)| containerd(m, ContainerdPath::Differ)),
        )
        .collect();
    let dir = tempfile::tempdir().unwrap();

    // the config's diff ID of layer 1 is another tar's
    let lying = dir.path().join("lying");
    let oci = OciDir::new(&lying);
    let mut specs = three_layers("lying");
    specs[1].diff_id = specs[0].diff_id.clone();
    oci.write_index(vec![oci.image(&specs, Some("linux/amd64"))]);
    for b in &builders {
        let input = Input::Image {
            path: lying.clone(),
            platform: None,
        };
        let e = compute(&input, b, None, &|_, _| {}).unwrap_err();
        assert!(
            matches!(e, ReferenceError::DiffIdMismatch { index: 1, .. }),
            "{b:?}: {e}"
        );
    }

    // a layer blob changed after the manifest was written
    let altered = dir.path().join("altered");
    let oci = OciDir::new(&altered);
    let specs = three_layers("altered");
    oci.write_index(vec![oci.image(&specs, Some("linux/amd64"))]);
    let blob = altered
        .join("blobs/sha256")
        .join(image_support::sha256_hex(&specs[2].blob));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    for b in &builders {
        let input = Input::Image {
            path: altered.clone(),
            platform: None,
        };
        let e = compute(&input, b, None, &|_, _| {}).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("layer 2"), "{b:?}: {msg}");
    }
}

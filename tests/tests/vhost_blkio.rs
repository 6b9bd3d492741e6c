//! The vhost-user-blk backend driven by an independent client (libblkio's Rust
//! implementation): every disk kind read back and compared with the files, writes and
//! discards on the scratch disk, refusal of writes on read-only disks, reconnects.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use layerpass::export::composite::{CompositeDisk, CompositeLayer};
use layerpass::export::layer::LayerDisk;
use layerpass::export::scratch::ScratchDisk;
use layerpass_tests::blk_client::BlkClient;
use layerpass_tests::served::Served;
use layerpass_tests::tools::{require_root, require_tool};
use sha2::{Digest, Sha256};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + usize::from(seed) * 7) % 251) as u8)
        .collect()
}

fn read_all(c: &mut BlkClient) -> Vec<u8> {
    let mut out = Vec::new();
    let cap = c.capacity();
    let mut at = 0;
    while at < cap {
        let n = (cap - at).min(1 << 20) as usize;
        out.extend(c.read(at, n).unwrap());
        at += n as u64;
    }
    out
}

#[test]
fn layer_disk_reads_blob_padding_and_separate_tree() {
    let dir = tempfile::tempdir().unwrap();
    let blob = pattern(10_000, 1);
    let tree = pattern(5000, 2);
    fs::write(dir.path().join("blob"), &blob).unwrap();
    fs::write(dir.path().join("tree"), &tree).unwrap();
    let disk = LayerDisk::open(
        &dir.path().join("blob"),
        Some(&dir.path().join("tree")),
        Some("layer-a"),
    )
    .unwrap();
    assert_eq!(disk.tree_offset(), Some(12_288));
    let server = Served::start(&dir.path().join("s.sock"), Arc::new(disk), 2).unwrap();
    let mut c = BlkClient::connect(server.socket(), true, 1 << 20).unwrap();
    assert_eq!(c.capacity(), 12_288 + 8192);
    let mut expected = blob.clone();
    expected.resize(12_288, 0);
    expected.extend(&tree);
    expected.resize(12_288 + 8192, 0);
    assert_eq!(read_all(&mut c), expected);
    // An unaligned window inside the padding and the tree.
    assert_eq!(c.read(9728, 4096).unwrap(), expected[9728..9728 + 4096]);
    // Writes are refused; reads still work afterwards.
    assert!(c.write(0, &[0u8; 512]).is_err());
    assert_eq!(c.read(0, 512).unwrap(), expected[..512]);
    assert_eq!(fs::read(dir.path().join("blob")).unwrap(), blob);
    // Past the end: an error, not data.
    assert!(c.read(c.capacity(), 512).is_err());
}

#[test]
fn reconnecting_clients_keep_reading() {
    let dir = tempfile::tempdir().unwrap();
    let blob = pattern(1 << 20, 3);
    fs::write(dir.path().join("blob"), &blob).unwrap();
    let disk = LayerDisk::open(&dir.path().join("blob"), None, None).unwrap();
    let server = Served::start(&dir.path().join("s.sock"), Arc::new(disk), 1).unwrap();
    for round in 0..5 {
        let mut c = BlkClient::connect(server.socket(), true, 1 << 20).unwrap();
        let at = round * 65_536;
        assert_eq!(
            c.read(at, 65_536).unwrap(),
            blob[at as usize..at as usize + 65_536],
            "round {round}"
        );
    }
}

#[test]
fn scratch_disk_writes_flushes_and_discards() {
    let Some(_) = require_tool("mkfs.ext4", "e2fsprogs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rwlayer.img");
    let disk = ScratchDisk::open_or_create(&path, Some(64 << 20), Some("scratch")).unwrap();
    // Created sparse and ext4-formatted.
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Filesystem magic number:  0xEF53"));
    let server = Served::start(&dir.path().join("s.sock"), Arc::new(disk), 2).unwrap();
    let mut c = BlkClient::connect(server.socket(), false, 1 << 20).unwrap();
    assert_eq!(c.capacity(), 64 << 20);
    let data = pattern(65_536, 9);
    let at = 40 << 20;
    c.write(at, &data).unwrap();
    c.flush().unwrap();
    let on_host = fs::read(&path).unwrap();
    assert_eq!(on_host[at as usize..at as usize + data.len()], data[..]);
    assert_eq!(c.read(at, data.len()).unwrap(), data);
    c.discard(at, 32_768).unwrap();
    assert_eq!(c.read(at, 32_768).unwrap(), vec![0; 32_768]);
    assert_eq!(c.read(at + 32_768, 32_768).unwrap(), data[32_768..]);
    let on_host = fs::read(&path).unwrap();
    assert!(
        on_host[at as usize..at as usize + 32_768]
            .iter()
            .all(|&b| b == 0)
    );
}

/// Detaches the loop device on drop, also when an assertion fails.
struct LoopDevice(String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn layer_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, String)> {
    [(300_000usize, 1u8), (8192, 2), (2_500_000, 3)]
        .iter()
        .map(|&(len, seed)| {
            let data = pattern(len, seed);
            let digest = hex::encode(Sha256::digest(&data));
            let p = dir.join(format!("{digest}.erofs"));
            fs::write(&p, &data).unwrap();
            (p, data, digest)
        })
        .collect()
}

#[test]
fn composite_disk_is_a_valid_gpt_with_every_layer() {
    // every tool first: the check runs whole or not at all
    let (Some(sfdisk), Some(sgdisk)) = (
        require_tool("sfdisk", "fdisk"),
        require_tool("sgdisk", "gdisk"),
    ) else {
        return;
    };
    if !require_root("attaching the composite disk to a loop device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layers = layer_files(dir.path());
    let spec: Vec<CompositeLayer> = layers
        .iter()
        .map(|(p, _, d)| CompositeLayer {
            blob: p.clone(),
            index: None,
            tree: None,
            diff_id: Some(layerpass_types::Digest::parse(&format!("sha256:{d}")).unwrap()),
            root_hash: None,
            block_size: None,
        })
        .collect();
    let disk = CompositeDisk::build(&spec, 4096, "lp-composite").unwrap();
    let placed = disk.layers().to_vec();
    let server = Served::start(&dir.path().join("s.sock"), Arc::new(disk), 1).unwrap();
    let mut c = BlkClient::connect(server.socket(), true, 1 << 20).unwrap();
    let image = read_all(&mut c);
    let names: std::collections::HashSet<&str> = placed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 3, "partition names must differ");
    for ((_, data, digest), p) in layers.iter().zip(&placed) {
        assert_eq!(p.name, format!("lp-{}", &digest[..32]));
        assert_eq!(p.offset % (1 << 20), 0);
        let part = &image[p.offset as usize..(p.offset + p.size) as usize];
        assert_eq!(&part[..data.len()], &data[..]);
        assert!(part[data.len()..].iter().all(|&b| b == 0));
    }
    // Materialise it on a loop device with 4096-byte sectors, as the guest sees it.
    let img = dir.path().join("composite.img");
    fs::write(&img, &image).unwrap();
    let out = Command::new("losetup")
        .args(["--find", "--show", "--read-only", "--sector-size", "4096"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = LoopDevice(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    let out = Command::new(&sfdisk)
        .arg("--json")
        .arg(&dev.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "gpt");
    assert_eq!(table["sectorsize"], 4096);
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (p, placed) in parts.iter().zip(&placed) {
        assert_eq!(p["name"], placed.name.as_str());
        assert_eq!(p["start"].as_u64().unwrap(), placed.offset / 4096);
        assert_eq!(p["size"].as_u64().unwrap(), placed.size / 4096);
        assert_eq!(
            p["uuid"].as_str().unwrap().to_lowercase(),
            placed.unique_guid.to_string()
        );
    }
    // sgdisk verifies both headers, both entry arrays and their CRCs.
    let v = Command::new(&sgdisk)
        .arg("-v")
        .arg(&dev.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("No problems found"), "sgdisk -v: {text}");
}

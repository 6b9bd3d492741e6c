//! `layerpass plan` as a user runs it: the plan on stdout is exactly what
//! `layerpass-guest mount --plan` reads (parsed and validated by the guest agent's own
//! code), and bad layers are refused with a message naming what is wrong.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn plan(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .arg("plan")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn verity_format(dir: &Path, name: &str, blocks: usize, extra: &[&str]) {
    fs::write(dir.join(name), vec![b'x'; 4096 * blocks]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["verity", "format", name])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_plan_is_what_the_guest_agent_reads() {
    let dir = tempfile::tempdir().unwrap();
    verity_format(dir.path(), "top.erofs", 3, &[]);
    verity_format(dir.path(), "base.erofs", 5, &[]);
    let digest = format!("sha256:{}", "ab".repeat(32));
    let out = plan(
        &[
            "--container",
            "web",
            "--upper",
            "disk:scratch",
            "--mount-point",
            "web/rootfs",
            "top.erofs",
            &format!("base.erofs@{digest}=base"),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // lowerCamelCase names of the protobuf JSON mapping
    assert!(
        text.contains("\"containerId\"") && text.contains("\"rootHash\""),
        "{text}"
    );
    let req = layerpass_protocols::json::parse_mount_request(&text).unwrap();
    let p = layerpass_guest::server::convert::mount_plan(&req).unwrap();
    p.validate().unwrap();
    assert_eq!(p.container_id, "web");
    assert_eq!(p.layers.len(), 2);
    assert_eq!(
        p.layers[0].disk,
        layerpass_guest::DiskRef::Serial("top.erofs".into())
    );
    assert_eq!(p.layers[0].digest, "");
    assert_eq!(
        p.layers[1].disk,
        layerpass_guest::DiskRef::Serial("base".into())
    );
    assert_eq!(p.layers[1].digest, digest);
    let v = p.layers[1].verity.as_ref().unwrap();
    assert_eq!((v.data_blocks, v.hash_start_block), (5, 6));
    let side: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("base.erofs.dmverity")).unwrap()).unwrap();
    assert_eq!(v.root_hash_hex(), side["roothash"].as_str().unwrap());

    // the same layers as partitions of the composite disk
    let out = plan(
        &[
            "--container",
            "web",
            "--composite",
            "lp-composite",
            "top.erofs",
            "base.erofs",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req =
        layerpass_protocols::json::parse_mount_request(std::str::from_utf8(&out.stdout).unwrap())
            .unwrap();
    let p = layerpass_guest::server::convert::mount_plan(&req).unwrap();
    p.validate().unwrap();
    assert!(
        matches!(&p.layers[0].disk, layerpass_guest::DiskRef::Partition { serial, name }
        if serial == "lp-composite" && name.starts_with("lp-") && name.len() == 35)
    );
}

#[test]
fn an_unsupported_block_size_is_refused_naming_it_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    verity_format(
        dir.path(),
        "big.erofs",
        4,
        &["--data-block-size", "8192", "--hash-block-size", "8192"],
    );
    let out = plan(&["--container", "c", "big.erofs"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data_block_size 8192")
            && err.contains("4096-byte logical blocks")
            && err.contains("from 4096 to 4096"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn colliding_default_serials_and_missing_sidecars_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["a", "b"] {
        fs::create_dir(dir.path().join(d)).unwrap();
        verity_format(&dir.path().join(d), "layer.erofs", 2, &[]);
    }
    let out = plan(
        &["--container", "c", "a/layer.erofs", "b/layer.erofs"],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("a/layer.erofs") && err.contains("b/layer.erofs"),
        "{err}"
    );

    fs::write(dir.path().join("raw.erofs"), vec![0u8; 8192]).unwrap();
    let out = plan(&["--container", "c", "raw.erofs"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no dm-verity parameters"),
        "{err}"
    );
    let out = plan(
        &["--container", "c", "--allow-unverified", "raw.erofs"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_encrypted_disk_upper_is_planned_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    verity_format(dir.path(), "top.erofs", 3, &[]);
    let args = |upper: &str| {
        plan(
            &["--container", "web", "--upper", upper, "top.erofs"],
            dir.path(),
        )
    };
    let out = args("encrypted-disk:scratch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["upper"],
        serde_json::json!({"encryptedDisk": {"disk": {"serial": "scratch"}}}),
        "{text}"
    );
    let req = layerpass_protocols::json::parse_mount_request(&text).unwrap();
    let p = layerpass_guest::server::convert::mount_plan(&req).unwrap();
    p.validate().unwrap();
    assert_eq!(
        p.upper,
        layerpass_guest::UpperSpec::EncryptedDisk {
            disk: layerpass_guest::DiskRef::Serial("scratch".into())
        }
    );

    for (bad, want) in [
        ("encrypted-disk:", "needs a serial"),
        ("encrypted-disk:s:ext4", "takes no filesystem"),
        ("encrypted-disk:top.erofs", "also a layer disk"),
    ] {
        let out = args(bad);
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{bad}: {stderr}");
    }
}

//! The plan builder on real layer files (trees written by our veritysetup-identical
//! formatter); every plan also passes the guest agent's own conversion and validation.

use std::path::{Path, PathBuf};

use layerpass_protocols::v1::guest as pb;
use layerpass_types::{Digest, TypeError};

use super::*;
use crate::export::spec::LayerFileSpec;
use crate::verity::{
    FormatOptions, FormatReport, HashTarget, Sidecar, VerityParams, format_file, sidecar_path,
};

const DIFF: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn data(path: &Path, blocks: usize, seed: u8) {
    let bytes: Vec<u8> = (0..blocks * 4096)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// A layer of `blocks` 4 KiB blocks with its tree appended (containerd's layout).
fn appended(dir: &Path, name: &str, blocks: usize, superblock: bool) -> (PathBuf, FormatReport) {
    let p = dir.join(name);
    data(&p, blocks, blocks as u8);
    let opts = FormatOptions {
        superblock,
        sidecar: superblock,
        ..FormatOptions::containerd()
    };
    let r = format_file(&p, &opts, None).unwrap();
    if !superblock {
        Sidecar {
            roothash: r.root_hash.clone(),
            hashoffset: r.hash_offset,
        }
        .write(&sidecar_path(&p))
        .unwrap();
    }
    (p, r)
}

fn spec(p: &Path) -> LayerFileSpec {
    LayerFileSpec::parse(p.to_str().unwrap()).unwrap()
}

fn files(layers: Vec<LayerFileSpec>, composite: Option<&str>) -> FilesPlan {
    FilesPlan {
        container_id: "c1".into(),
        layers,
        composite: composite.map(str::to_owned),
        upper: Upper::Tmpfs {
            size_bytes: 1 << 20,
        },
        mount_point: None,
        allow_unverified: false,
    }
}

/// An error and its causes, `: `-separated, as the command line prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The guest agent's own reading of the request: its conversion and `validate`.
fn guest_accepts(req: &pb::MountRequest) -> layerpass_guest::MountPlan {
    let plan = layerpass_guest::server::convert::mount_plan(req).unwrap();
    plan.validate().unwrap();
    plan
}

#[test]
fn layer_disk_with_appended_tree_and_superblock() {
    let dir = tempfile::tempdir().unwrap();
    let (p, r) = appended(dir.path(), "layer.erofs", 9, true);
    let req = files(vec![spec(&p)], None).build().unwrap();
    let plan = guest_accepts(&req);
    let l = &plan.layers[0];
    assert_eq!(
        l.disk,
        layerpass_guest::DiskRef::Serial("layer.erofs".into())
    );
    let v = l.verity.as_ref().unwrap();
    assert_eq!(
        (v.data_blocks, v.data_block_size, v.hash_block_size),
        (9, 4096, 4096)
    );
    // the kernel table of the formatter: superblock at the offset, tree one block later
    assert_eq!(v.hash_start_block, r.hash_start_block);
    assert_eq!(v.hash_start_block, r.hash_offset / 4096 + 1);
    assert_eq!(v.root_hash_hex(), r.root_hash);
    assert_eq!(v.salt, vec![0; 32]);
    assert_eq!(l.digest, "", "no diff ID known: empty, not a guess");
}

#[test]
fn appended_tree_without_superblock() {
    let dir = tempfile::tempdir().unwrap();
    let (p, r) = appended(dir.path(), "l.erofs", 5, false);
    let req = files(vec![spec(&p)], None).build().unwrap();
    let v = guest_accepts(&req).layers[0].verity.clone().unwrap();
    assert_eq!(v.hash_start_block, r.hash_offset / 4096);
    assert_eq!(v.hash_start_block, r.hash_start_block);
    assert_eq!((v.data_blocks, v.root_hash_hex()), (5, r.root_hash));
}

#[test]
fn separate_tree_with_superblock() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("blob");
    data(&p, 3, 7);
    let tree = dir.path().join("blob.tree");
    let opts = FormatOptions {
        params: VerityParams::containerd(),
        target: HashTarget::File(tree.clone()),
        sidecar: false,
        ..FormatOptions::containerd()
    };
    let r = format_file(&p, &opts, None).unwrap();
    Sidecar {
        roothash: r.root_hash.clone(),
        hashoffset: 0,
    }
    .write(&sidecar_path(&p))
    .unwrap();
    let s = LayerFileSpec::parse(&format!(
        "{}:{}@{DIFF}=blobdisk",
        p.display(),
        tree.display()
    ))
    .unwrap();
    let req = files(vec![s], None).build().unwrap();
    let plan = guest_accepts(&req);
    let l = &plan.layers[0];
    assert_eq!(l.digest, DIFF);
    assert_eq!(l.disk, layerpass_guest::DiskRef::Serial("blobdisk".into()));
    let v = l.verity.as_ref().unwrap();
    // the blob (3 blocks) is padded to 4096, then the tree file: its superblock, its tree
    assert_eq!(v.hash_start_block, 3 + r.hash_start_block);
    assert_eq!((v.data_blocks, v.root_hash_hex()), (3, r.root_hash));
}

#[test]
fn composite_partitions_are_named_by_diff_id_else_root_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ra) = appended(dir.path(), "a.erofs", 4, true);
    let (b, _) = appended(dir.path(), "b.erofs", 6, true);
    let with_digest = LayerFileSpec::parse(&format!("{}@{DIFF}", b.display())).unwrap();
    let req = files(vec![spec(&a), with_digest], Some("lp-composite"))
        .build()
        .unwrap();
    let plan = guest_accepts(&req);
    let names: Vec<_> = plan.layers.iter().map(|l| l.disk.clone()).collect();
    assert_eq!(
        names,
        [
            layerpass_guest::DiskRef::Partition {
                serial: "lp-composite".into(),
                name: format!("lp-{}", &ra.root_hash[..32]),
            },
            layerpass_guest::DiskRef::Partition {
                serial: "lp-composite".into(),
                name: format!("lp-{}", &DIFF[7..39]),
            },
        ]
    );
    // the composite disk names its partitions by the same rule
    let disk = crate::export::composite::CompositeDisk::build(
        &[
            spec(&a).composite_layer().unwrap(),
            LayerFileSpec::parse(&format!("{}@{DIFF}", b.display()))
                .unwrap()
                .composite_layer()
                .unwrap(),
        ],
        4096,
        "lp-composite",
    )
    .unwrap();
    let placed: Vec<_> = disk.layers().iter().map(|l| l.name.clone()).collect();
    let planned: Vec<_> = req
        .layers
        .iter()
        .map(|l| l.disk.partition().name.clone())
        .collect();
    assert_eq!(placed, planned);
    let e = files(
        vec![LayerFileSpec::parse(&format!("{}=x", a.display())).unwrap()],
        Some("lp-composite"),
    )
    .build()
    .unwrap_err();
    assert!(e.to_string().contains("=SERIAL"), "{e}");
}

#[test]
fn wrong_sidecars_are_errors_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (p, r) = appended(dir.path(), "l.erofs", 4, true);
    let side = sidecar_path(&p);
    for (sidecar, want) in [
        (
            Sidecar {
                roothash: "ab".repeat(31),
                hashoffset: r.hash_offset,
            },
            "roothash",
        ),
        (
            Sidecar {
                roothash: r.root_hash.clone(),
                hashoffset: r.hash_offset + 100,
            },
            "not whole 4096-byte blocks",
        ),
        (
            Sidecar {
                roothash: r.root_hash.clone(),
                hashoffset: r.hash_offset + 4096 * 50,
            },
            "past the end of the disk",
        ),
    ] {
        sidecar.write(&side).unwrap();
        let e = files(vec![spec(&p)], None).build().unwrap_err();
        let m = chain(&e);
        assert!(m.contains(want) && m.contains("l.erofs"), "{want}: {m}");
    }
    std::fs::remove_file(&side).unwrap();
    let e = files(vec![spec(&p)], None).build().unwrap_err();
    assert!(matches!(e, PlanError::NoVerity { .. }), "{e}");
    let mut unverified = files(vec![spec(&p)], None);
    unverified.allow_unverified = true;
    let plan = guest_accepts(&unverified.build().unwrap());
    assert!(plan.layers[0].verity.is_none());
}

#[test]
fn a_block_size_the_guest_refuses_is_refused_naming_it_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.erofs");
    data(&p, 8, 1);
    let mut params = VerityParams::containerd();
    params.data_block_size = 8192;
    params.hash_block_size = 8192;
    let opts = FormatOptions {
        params,
        ..FormatOptions::containerd()
    };
    format_file(&p, &opts, None).unwrap();
    let e = files(vec![spec(&p)], None).build().unwrap_err();
    assert_eq!(
        chain(&e),
        format!(
            "layer {}: verity data_block_size 8192: a layer exported to a guest on a disk with \
             4096-byte logical blocks needs a power of two from 4096 to 4096",
            p.display()
        )
    );
    assert!(matches!(
        e,
        PlanError::Contract {
            source: TypeError::Verity { .. },
            ..
        }
    ));
}

#[test]
fn default_serials_that_collide_are_an_error_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["x", "y"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let (a, _) = appended(&dir.path().join("x"), "layer.erofs", 2, true);
    let (b, _) = appended(&dir.path().join("y"), "layer.erofs", 3, true);
    let e = files(vec![spec(&a), spec(&b)], None).build().unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains(&a.display().to_string()) && m.contains(&b.display().to_string()),
        "{m}"
    );
    // naming one of them solves it
    let named = LayerFileSpec::parse(&format!("{}=second", b.display())).unwrap();
    guest_accepts(&files(vec![spec(&a), named], None).build().unwrap());
}

#[test]
fn an_encrypted_disk_upper() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = appended(dir.path(), "l.erofs", 2, true);
    let mut f = files(vec![spec(&p)], None);
    f.upper = Upper::EncryptedDisk {
        serial: "scratch".into(),
    };
    let req = f.build().unwrap();
    let plan = guest_accepts(&req);
    assert_eq!(
        plan.upper,
        layerpass_guest::UpperSpec::EncryptedDisk {
            disk: layerpass_guest::DiskRef::Serial("scratch".into())
        }
    );
    let json = layerpass_protocols::json::print_plan(&req).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["upper"],
        serde_json::json!({"encryptedDisk": {"disk": {"serial": "scratch"}}}),
        "{json}"
    );
    // A layer's disk is no upper; a serial the guest would refuse is refused here.
    f.upper = Upper::EncryptedDisk {
        serial: "l.erofs".into(),
    };
    assert!(matches!(f.build(), Err(PlanError::UpperIsLayer { .. })));
    for bad in ["", &"s".repeat(21)] {
        f.upper = Upper::EncryptedDisk { serial: bad.into() };
        let err = f.build().unwrap_err();
        assert!(
            err.to_string().contains("upper encrypted disk"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn upper_and_mount_point() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = appended(dir.path(), "l.erofs", 2, true);
    let mut f = files(vec![spec(&p)], None);
    f.upper = Upper::Disk {
        serial: "scratch".into(),
        fs_type: "ext4".into(),
    };
    // Relative to the guest's rootfs root, as the guest requires.
    for bad in ["/run/c1/rootfs", "../containers/c1", "a//b"] {
        f.mount_point = Some(bad.into());
        let err = f.build().unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(err.to_string().contains("mount point"), "{bad}: {err}");
        assert!(
            cause
                .as_deref()
                .is_some_and(|c| c.starts_with("mount_point ")),
            "{bad}: {cause:?}"
        );
    }
    f.mount_point = Some("c1/rootfs".into());
    let plan = guest_accepts(&f.build().unwrap());
    assert_eq!(plan.mount_point.as_deref(), Some(Path::new("c1/rootfs")));
    f.upper = Upper::Disk {
        serial: "l.erofs".into(),
        fs_type: "ext4".into(),
    };
    assert!(matches!(f.build(), Err(PlanError::UpperIsLayer { .. })));
    f.upper = Upper::Disk {
        serial: "scratch".into(),
        fs_type: "vfat".into(),
    };
    assert!(f.build().unwrap_err().to_string().contains("vfat"));
    assert!(matches!(
        files(vec![], None).build(),
        Err(PlanError::NoLayers)
    ));
    let mut bad = files(vec![spec(&p)], None);
    bad.container_id = "../x".into();
    assert!(
        bad.build()
            .unwrap_err()
            .to_string()
            .contains("container id")
    );
    let _ = Digest::parse(DIFF).unwrap();
}

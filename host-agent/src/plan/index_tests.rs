//! Plans for index layers (`META+TAR`) and containerd's tar-index blobs (verity 512/512):
//! the mapping, the disk's 512-byte logical blocks, the guest's acceptance, and the served
//! disk verifying under the planned mapping.

use std::fs::File;
use std::path::Path;

use vm_memory::VolatileSlice;

use super::*;
use crate::export::Disk;
use crate::export::index_fixture::{appended_blob, index_layer};
use crate::export::spec::LayerFileSpec;
use crate::verity::{
    FormatOptions, Geometry, HashTarget, RootHash, Sidecar, VerifyLocation, VerityParams,
    format_file, sidecar_path, verify_tree,
};

type Req = layerpass_protocols::v1::guest::MountRequest;

fn plan(layers: Vec<LayerFileSpec>, composite: Option<&str>) -> Result<Req, PlanError> {
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
    .build()
}

fn guest(req: &Req) -> layerpass_guest::MountPlan {
    let plan = layerpass_guest::server::convert::mount_plan(req).unwrap();
    plan.validate().unwrap();
    plan
}

fn parse(s: &str) -> LayerFileSpec {
    LayerFileSpec::parse(s).unwrap()
}

fn error(spec: &LayerFileSpec) -> String {
    let mut e: &dyn std::error::Error = &layer_mapping(spec).unwrap_err();
    let mut out = e.to_string();
    while let Some(c) = e.source() {
        out.push_str(": ");
        out.push_str(&c.to_string());
        e = c;
    }
    out
}

#[test]
fn an_index_layer_maps_512_byte_data_over_meta_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    let f = index_layer(dir.path(), "idx", 5, 23, 3);
    let spec = parse(&f.spec());
    let m = layer_mapping(&spec).unwrap();
    assert_eq!((m.data_block_size, m.hash_block_size), (512, 4096));
    assert_eq!(m.data_blocks, f.data_len / 512);
    assert_eq!(m.hash_start_block, f.data_len / 4096 + 1);
    assert_eq!(
        m.hash_start_block,
        f.report.hash_start_block + f.data_len / 4096
    );
    assert_eq!(hex::encode(&m.root_hash), f.report.root_hash);

    // per-layer disk and composite partition: both at 512-byte logical blocks
    for composite in [None, Some("lp-composite")] {
        let req = plan(vec![spec.clone()], composite).unwrap();
        let v = guest(&req).layers[0].verity.clone().unwrap();
        assert_eq!(v.data_block_size, 512);
    }

    // the served disk verifies under the planned mapping
    let disk = spec.layer_disk(None).unwrap();
    assert_eq!(disk.logical_block_size(), 512);
    let mut bytes = vec![0u8; disk.size() as usize];
    disk.read_at(0, &[VolatileSlice::from(bytes.as_mut_slice())])
        .unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, &bytes).unwrap();
    let file = File::open(&image).unwrap();
    let params = VerityParams {
        data_block_size: 512,
        ..VerityParams::containerd()
    };
    let root = RootHash::from_bytes(m.root_hash.clone(), m.algorithm).unwrap();
    let geometry = Geometry::new(&params, m.data_blocks).unwrap();
    let loc = |tree_start| VerifyLocation {
        data: (&file, image.as_path()),
        hash: (&file, image.as_path()),
        tree_start,
    };
    verify_tree(
        loc(m.hash_start_block * 4096),
        &params,
        &geometry,
        &root,
        None,
    )
    .unwrap();
    // and fails with a flipped byte in the tar region
    let at = f.meta_bytes.len() + 700;
    bytes[at] ^= 1;
    std::fs::write(&image, &bytes).unwrap();
    let file2 = File::open(&image).unwrap();
    let loc2 = VerifyLocation {
        data: (&file2, image.as_path()),
        hash: (&file2, image.as_path()),
        tree_start: m.hash_start_block * 4096,
    };
    assert!(verify_tree(loc2, &params, &geometry, &root, None).is_err());
}

#[test]
fn an_index_sidecar_must_point_past_meta_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    let f = index_layer(dir.path(), "idx", 3, 11, 0);
    Sidecar {
        roothash: f.report.root_hash.clone(),
        hashoffset: f.data_len + 4096,
    }
    .write(&sidecar_path(&f.meta))
    .unwrap();
    let e = error(&parse(&f.spec()));
    assert!(e.contains("hashoffset"), "{e}");
}

#[test]
fn an_index_tree_must_have_512_byte_data_blocks_over_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = index_layer(dir.path(), "idx", 3, 11, 0);
    let data = dir.path().join("data");
    std::fs::write(&data, vec![0u8; f.data_len as usize]).unwrap();
    let tree = dir.path().join("other.tree");
    let write_tree = |params: VerityParams, data_blocks: Option<u64>| {
        let opts = FormatOptions {
            params,
            target: HashTarget::File(tree.clone()),
            sidecar: false,
            data_blocks,
            ..FormatOptions::containerd()
        };
        format_file(&data, &opts, None).unwrap();
    };
    let with_tree = parse(&format!("{}:{}", f.spec(), tree.display()));
    write_tree(VerityParams::containerd(), None);
    let e = error(&with_tree);
    assert!(e.contains("4096-byte data blocks"), "{e}");
    let p512 = VerityParams {
        data_block_size: 512,
        ..VerityParams::containerd()
    };
    write_tree(p512, Some(f.data_len / 512 - 1));
    let e = error(&with_tree);
    assert!(e.contains("covers"), "{e}");
    // the default tree beside META still works
    assert!(layer_mapping(&parse(&f.spec())).is_ok());
    // a tree without a superblock is refused
    std::fs::write(&tree, vec![0u8; 8192]).unwrap();
    let e = error(&with_tree);
    assert!(e.contains("no veritysetup superblock"), "{e}");
}

#[test]
fn containerd_tar_index_blobs_plan_at_512_512() {
    let dir = tempfile::tempdir().unwrap();
    let (blob, r) = appended_blob(dir.path(), "layer.erofs", 40, 512, 512);
    let spec = parse(blob.to_str().unwrap());
    for composite in [None, Some("lp-composite")] {
        let req = plan(vec![spec.clone()], composite).unwrap();
        let v = guest(&req).layers[0].verity.clone().unwrap();
        assert_eq!((v.data_block_size, v.hash_block_size), (512, 512));
        assert_eq!(v.data_blocks, 40);
        assert_eq!(v.hash_start_block, r.hash_offset / 512 + 1);
        assert_eq!(v.root_hash_hex(), r.root_hash);
    }
    // stacked with a 4096-block layer on one composite disk: both at 512
    let (other, _) = appended_blob(dir.path(), "b.erofs", 16, 4096, 4096);
    let req = plan(
        vec![spec, parse(other.to_str().unwrap())],
        Some("lp-composite"),
    )
    .unwrap();
    assert_eq!(guest(&req).layers.len(), 2);
}

/// Planning opens the layer's files the way `blk serve` does.
#[test]
fn an_index_layer_with_a_missing_tar_is_not_planned() {
    let dir = tempfile::tempdir().unwrap();
    let f = index_layer(dir.path(), "idx", 3, 11, 0);
    let missing = Path::new("/nonexistent/layer.tar");
    let spec = parse(&format!("{}+{}", f.meta.display(), missing.display()));
    assert!(plan(vec![spec], None).is_err());
}

//! The daemon's disks and plan for layers whose verity has 512-byte blocks (containerd's
//! tar-index blobs): each disk advertises 512, the plan is checked against it, and the
//! guest accepts it.

use std::path::Path;

use super::config::{Config, ExportMode, VerityMode};
use super::disks::assemble;
use super::layers::{Resolved, ResolvedLayer, SourceUpper};
use super::verity::layer_verity;
use crate::export::index_fixture::appended_blob;
use crate::state::ExportKey;

fn resolved(dir: &Path, blobs: &[&Path]) -> Resolved {
    let layers = blobs
        .iter()
        .map(|b| ResolvedLayer {
            blob: b.to_path_buf(),
            index: None,
            diff_id: None,
            verity: layer_verity(b, None, VerityMode::RequireSidecar, &dir.join("trees")).unwrap(),
        })
        .collect();
    Resolved {
        layers,
        upper: SourceUpper::None,
        volatile: false,
        userxattr: false,
        description: "test".into(),
        created: Vec::new(),
    }
}

#[test]
fn tar_index_blobs_are_exported_at_512_byte_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = appended_blob(dir.path(), "a.erofs", 40, 512, 512);
    let (b, _) = appended_blob(dir.path(), "b.erofs", 16, 4096, 4096);
    let config = Config {
        state_dir: dir.path().join("state"),
        ..Config::default()
    };
    let key = ExportKey {
        sandbox: "sb".into(),
        container: "c1".into(),
    };
    let r = resolved(dir.path(), &[&a, &b]);
    let per_layer = assemble(&key, &r, ExportMode::PerLayer, None, &config).unwrap();
    let sizes: Vec<u32> = per_layer
        .disks
        .iter()
        .map(|(_, d)| d.logical_block_size())
        .collect();
    assert_eq!(sizes, [512, 4096]);
    let composite = assemble(&key, &r, ExportMode::Composite, None, &config).unwrap();
    assert_eq!(composite.disks[0].1.logical_block_size(), 512);
    for plan in [per_layer.plan, composite.plan] {
        let guest = layerpass_guest::server::convert::mount_plan(&plan).unwrap();
        guest.validate().unwrap();
        let v = guest.layers[0].verity.clone().unwrap();
        assert_eq!((v.data_block_size, v.hash_block_size), (512, 512));
    }
    // a disk reopened from its record after a restart keeps its block size
    let (record, _) = &composite.disks[0];
    assert_eq!(
        super::disks::open_disk(record)
            .unwrap()
            .logical_block_size(),
        512
    );
}

/// containerd's mount option may name the sidecar anywhere: the disk's block size follows
/// the mapping the daemon read from it, also after a restart.
#[test]
fn a_sidecar_elsewhere_still_gives_512_byte_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = appended_blob(dir.path(), "a.erofs", 40, 512, 512);
    let elsewhere = dir.path().join("sidecars");
    std::fs::create_dir(&elsewhere).unwrap();
    let side = elsewhere.join("a.dmverity");
    std::fs::rename(crate::verity::sidecar_path(&a), &side).unwrap();
    let verity = layer_verity(
        &a,
        Some(&side),
        VerityMode::RequireSidecar,
        &dir.path().join("trees"),
    )
    .unwrap();
    let mut r = resolved(dir.path(), &[]);
    r.layers.push(ResolvedLayer {
        blob: a.clone(),
        index: None,
        diff_id: None,
        verity,
    });
    let config = Config {
        state_dir: dir.path().join("state"),
        ..Config::default()
    };
    let key = ExportKey {
        sandbox: "sb".into(),
        container: "c1".into(),
    };
    for mode in [ExportMode::PerLayer, ExportMode::Composite] {
        let out = assemble(&key, &r, mode, None, &config).unwrap();
        let (record, disk) = &out.disks[0];
        assert_eq!(disk.logical_block_size(), 512, "{mode:?}");
        let reopened = super::disks::open_disk(record).unwrap();
        assert_eq!(reopened.logical_block_size(), 512, "{mode:?}");
    }
}

//! The EROFS feature check before a layer's mount: index layers (512-byte blocks) and
//! containerd's tar-index blobs (a flat device table) against the running kernel.

use layerpass_protocols::status::Kind;

use super::*;
use crate::error::Step;
use crate::kernel::MountSpec;
use crate::kernel::fake::{Call, erofs_head};

const DEBIAN_6_1: (&str, &str) = (
    "6.1.0-57-cloud-amd64",
    "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-10-01)",
);
const DEBIAN_6_1_OLD: (&str, &str) = (
    "6.1.0-26-cloud-amd64",
    "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1 (2024-09-30)",
);
const BACKPORTS_6_12: (&str, &str) = (
    "6.12.57+deb12-cloud-amd64",
    "#1 SMP PREEMPT_DYNAMIC Debian 6.12.57-1~bpo12+1 (2026-11-02)",
);

/// Layer `n` as an index layer: verity with 512-byte data blocks and 4096-byte hash
/// blocks over a disk whose EROFS has the given superblock fields.
fn index_env(n: u8, kernel: (&str, &str), blkszbits: u8, incompat: u32, extra: u16) -> Env {
    let e = env();
    e.kernel.set_release(kernel.0, kernel.1);
    e.kernel.set_contents(
        DiskRef::Serial(format!("layer{n}")),
        erofs_head(blkszbits, incompat, extra),
    );
    e
}

fn index_plan(n: u8) -> MountPlan {
    let mut p = plan("c1", &[n]);
    let v = p.layers[0].verity.as_mut().unwrap();
    // 10 × 4096 bytes of data as 80 blocks of 512; the tree follows at hash block 11.
    v.data_block_size = 512;
    v.data_blocks = 80;
    p
}

fn erofs_mounts(e: &Env) -> usize {
    e.kernel
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Mount(MountSpec::Erofs { .. }, _)))
        .count()
}

#[test]
fn an_index_layer_mounts_on_6_1_with_512_byte_verity_data_blocks() {
    let e = index_env(1, DEBIAN_6_1, 9, 0x4, 0);
    e.agent.mount(&index_plan(1)).unwrap();
    let table = e.kernel.table(&dm(1)).unwrap();
    assert_eq!(table[0].length, 80, "80 blocks of 512 bytes");
    assert!(
        table[0].params.contains(" 512 4096 80 11 sha256 "),
        "{}",
        table[0].params
    );
    // The superblock is read through the verity device, after its node, before the mount.
    let labels = e.kernel.labels();
    let read = format!("read /dev/mapper/{} 1024+128", dm(1));
    let at = |l: &str| labels.iter().position(|x| x == l).unwrap();
    assert!(at(&format!("make_node /dev/mapper/{}", dm(1))) < at(&read));
    assert!(at(&read) < labels.iter().position(|l| l.starts_with("mount ")).unwrap());
    assert_eq!(erofs_mounts(&e), 1);
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn containerds_tar_index_is_refused_on_6_1_before_any_mount_and_verity_is_undone() {
    let e = index_env(2, DEBIAN_6_1, 9, 0x4 | 0x8, 1);
    let err = e.agent.mount(&index_plan(2)).unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert_eq!(err.step(), Step::MountErofs);
    let msg = err.chain().to_string();
    for want in [
        "container c1: layer 0 (sha256:0202",
        &format!("root hash {}", hex::encode(root(2))),
        "cannot be mounted by this kernel",
        "1 extra device(s)",
        "needs Linux 6.4 or later (flatdev)",
        "6.1.0-57-cloud-amd64 (6.1.192)",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    assert_eq!(erofs_mounts(&e), 0);
    assert!(
        e.kernel.labels().contains(&format!("dm_remove {}", dm(2))),
        "{:?}",
        e.kernel.labels()
    );
    e.assert_clean();
}

#[test]
fn containerds_tar_index_mounts_on_6_12() {
    let e = index_env(2, BACKPORTS_6_12, 9, 0x4 | 0x8, 1);
    e.agent.mount(&index_plan(2)).unwrap();
    assert_eq!(erofs_mounts(&e), 1);
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn sub_page_blocks_are_refused_before_6_1_113() {
    let e = index_env(3, DEBIAN_6_1_OLD, 9, 0x4, 0);
    let err = e.agent.mount(&index_plan(3)).unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    let msg = err.chain().to_string();
    assert!(
        msg.contains("512-byte EROFS blocks (smaller than the page) need Linux 6.1.113"),
        "{msg}"
    );
    assert!(msg.contains("6.1.0-26-cloud-amd64 (6.1.112)"), "{msg}");
    assert_eq!(erofs_mounts(&e), 0);
    e.assert_clean();
    // A full conversion (4096-byte blocks) mounts there.
    let e = index_env(3, DEBIAN_6_1_OLD, 12, 0, 0);
    e.agent.mount(&plan("c1", &[3])).unwrap();
    assert_eq!(erofs_mounts(&e), 1);
}

#[test]
fn a_disk_without_erofs_is_refused_before_the_mount() {
    let e = env();
    e.kernel
        .set_contents(DiskRef::Serial("layer4".into()), vec![0; 2048]);
    let err = e.agent.mount(&plan("c1", &[4])).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    let msg = err.chain().to_string();
    assert!(msg.contains("holds no EROFS filesystem"), "{msg}");
    assert!(msg.contains("is not EROFS's 0xe0f5e1e2"), "{msg}");
    assert_eq!(erofs_mounts(&e), 0);
    e.assert_clean();
    // A disk shorter than the superblock: the read fails, nothing is mounted.
    let e = env();
    e.kernel
        .set_contents(DiskRef::Serial("layer4".into()), vec![0; 1100]);
    let err = e.agent.mount(&plan("c1", &[4])).unwrap_err();
    assert!(
        err.chain()
            .to_string()
            .contains("reading the EROFS superblock"),
        "{}",
        err.chain()
    );
    assert_eq!(erofs_mounts(&e), 0);
    e.assert_clean();
}

#[test]
fn an_eio_reading_the_superblock_names_the_root_hash() {
    let e = env();
    e.kernel
        .fail_when(|c| matches!(c, Call::ReadDevice(..)).then_some(EIO));
    let err = e.agent.mount(&plan("c1", &[5])).unwrap_err();
    assert_eq!(err.step(), Step::MountErofs);
    let msg = err.chain().to_string();
    assert!(
        msg.contains(&format!(
            "does not match root hash {}",
            hex::encode(root(5))
        )),
        "{msg}"
    );
    assert_eq!(erofs_mounts(&e), 0);
    e.assert_clean();
}

#[test]
fn a_layer_without_verity_is_checked_on_its_disk() {
    let e = index_env(6, DEBIAN_6_1, 9, 0x4 | 0x8, 1);
    let mut p = plan("c1", &[6]);
    p.layers[0].verity = None;
    let err = e.agent.mount(&p).unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(
        e.kernel
            .labels()
            .iter()
            .any(|l| l.starts_with("read /dev/fake") && l.ends_with(" 1024+128")),
        "{:?}",
        e.kernel.labels()
    );
    e.assert_clean();
}

#[test]
fn an_unparsable_release_leaves_the_decision_to_the_kernel() {
    let e = index_env(7, ("weird-kernel", ""), 9, 0x4 | 0x8, 1);
    e.agent.mount(&index_plan(7)).unwrap();
    assert_eq!(erofs_mounts(&e), 1);
}

//! Layer setup and teardown: sharing, dm-verity, missing disks, EIO.

use layerpass_protocols::status::Kind;

use super::*;
use crate::error::Step;
use crate::kernel::fake::Call;
use crate::kernel::{Kernel, MountSpec};

#[test]
fn layers_shared_by_containers_are_set_up_once_and_removed_with_the_last_user() {
    let e = env();
    let a = e.agent.mount(&plan("c1", &[1, 2, 3])).unwrap();
    let b = e.agent.mount(&plan("c2", &[4, 2, 3])).unwrap();
    assert!(a.layers.iter().all(|l| !l.shared));
    assert_eq!(
        b.layers.iter().map(|l| l.shared).collect::<Vec<_>>(),
        [false, true, true]
    );
    for n in 1..=4 {
        assert_eq!(
            e.kernel.count(&format!("dm_create {}", dm(n))),
            1,
            "layer {n}"
        );
    }
    assert_eq!(
        e.agent
            .layer_users(HashAlgorithm::Sha256, &hex::encode(root(2))),
        2
    );
    assert_eq!(e.agent.status().layers, 4);

    e.agent.unmount("c1").unwrap();
    assert_eq!(e.kernel.dm_devices(), {
        let mut v = vec![dm(2), dm(3), dm(4)];
        v.sort();
        v
    });
    assert_eq!(
        e.agent
            .layer_users(HashAlgorithm::Sha256, &hex::encode(root(2))),
        1
    );
    e.agent.unmount("c2").unwrap();
    e.assert_clean();
}

#[test]
fn a_failed_mount_keeps_the_layers_other_containers_use() {
    let e = env();
    e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    e.kernel
        .fail_when(|c| matches!(c, Call::Mount(MountSpec::Overlay(_), _)).then_some(EIO));
    let err = e.agent.mount(&plan("c2", &[2, 3])).unwrap_err();
    assert_eq!(err.step(), Step::Overlay);
    assert_eq!(
        e.kernel.dm_devices().len(),
        2,
        "{:?}",
        e.kernel.dm_devices()
    );
    assert_eq!(
        e.agent
            .layer_users(HashAlgorithm::Sha256, &hex::encode(root(2))),
        1
    );
    e.kernel.clear_failures();
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn a_missing_disk_is_not_found_naming_the_disk_and_layer() {
    let e = env();
    let mut p = plan("c1", &[1, 2]);
    p.layers[1].disk = DiskRef::Partition {
        serial: "composite".into(),
        name: "lp-x".into(),
    };
    let err = e.agent.mount(&p).unwrap_err();
    assert_eq!(err.kind(), Kind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "container c1: layer 1 ({}): find disk: no partition \"lp-x\"",
            p.layers[1].digest
        )),
        "{msg}"
    );
    e.assert_clean();
}

#[test]
fn layers_without_verity_mount_the_raw_disk() {
    let e = env();
    let mut p = plan("c1", &[1]);
    p.layers = vec![layer(7, false)];
    p.upper = UpperSpec::Tmpfs {
        size_bytes: 1 << 20,
    };
    let r = e.agent.mount(&p).unwrap();
    assert_eq!(r.layers[0].root_hash, "");
    assert!(
        r.layers[0]
            .device
            .to_string_lossy()
            .starts_with("/dev/fake")
    );
    assert!(!e.kernel.labels().iter().any(|l| l.starts_with("dm_")));
    assert!(
        e.kernel
            .mounts()
            .values()
            .any(|m| matches!(m, MountSpec::Tmpfs { size_bytes } if *size_bytes == 1 << 20))
    );
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn repeated_layers_are_stacked_once() {
    let e = env();
    let r = e.agent.mount(&plan("c1", &[1, 2, 1])).unwrap();
    assert_eq!(r.layers.len(), 2);
    assert_eq!(e.kernel.count(&format!("dm_create {}", dm(1))), 1);
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn a_disk_too_small_for_its_verity_parameters_is_refused() {
    let e = env();
    let mut p = plan("c1", &[1]);
    p.layers[0].verity.as_mut().unwrap().data_blocks = 11;
    p.layers[0].verity.as_mut().unwrap().hash_start_block = 12;
    let err = e.agent.mount(&p).unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(err.to_string().contains("dm-verity:"), "{err}");
    e.assert_clean();
}

#[test]
fn a_dm_device_the_agent_did_not_create_is_left_alone() {
    let e = env();
    e.kernel.dm_create(&dm(1), "someone-else").unwrap();
    let err = e.agent.mount(&plan("c1", &[2, 1])).unwrap_err();
    assert_eq!(err.kind(), Kind::AlreadyExists);
    assert!(
        err.to_string().contains("layer 1 (") && err.to_string().contains("did not create it"),
        "{err}"
    );
    assert_eq!(
        e.kernel.dm_devices(),
        [dm(1)],
        "only the foreign device remains"
    );
    assert!(e.kernel.mounts().is_empty());
}

#[test]
fn a_failed_layer_teardown_keeps_the_state_and_a_retry_finishes() {
    let e = env();
    e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    let name = dm(1);
    e.kernel
        .fail_when(move |c| matches!(c, Call::DmRemove(n) if *n == name).then_some(EBUSY));
    let err = e.agent.unmount("c1").unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(
        err.to_string()
            .contains(&format!("removing dm device {}", dm(1))),
        "{err}"
    );
    // The rootfs is gone, the state stays for a retry, here by a new agent process.
    assert_eq!(e.kernel.mounts().len(), 0);
    let config = e.agent.config().clone();
    let Env {
        dir: _dir,
        kernel,
        agent,
    } = e;
    assert!(config.run_dir.join("containers/c1/state.json").exists());
    drop(agent);
    kernel.clear_failures();
    let again = Agent::with_kernel(config.clone(), kernel.clone()).unwrap();
    again.unmount("c1").unwrap();
    assert!(kernel.dm_devices().is_empty());
    assert!(!config.run_dir.join("containers/c1").exists());
}

#[test]
fn an_eio_mounting_a_verity_layer_names_the_root_hash() {
    let e = env();
    e.kernel
        .fail_when(|c| matches!(c, Call::Mount(MountSpec::Erofs { .. }, _)).then_some(EIO));
    let err = e.agent.mount(&plan("c1", &[3])).unwrap_err();
    assert_eq!(err.step(), Step::MountErofs);
    // The message names the root hash; the OS error is the source, printed once by the
    // chain (what the ttrpc status and the command line show).
    let msg = err.chain().to_string();
    assert!(
        msg.contains(&format!(
            "does not match root hash {}",
            hex::encode(root(3))
        )),
        "{msg}"
    );
    assert_eq!(msg.matches("Input/output error").count(), 1, "{msg}");
    assert!(!err.to_string().contains("Input/output error"), "{err}");
    e.assert_clean();
}

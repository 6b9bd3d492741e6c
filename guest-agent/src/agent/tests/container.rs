//! Container lifecycle: the order of kernel calls, rollback, locks, mount points.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerpass_protocols::status::Kind;

use super::*;
use crate::events::LayerEvent;
use crate::kernel::fake::Call;
use crate::kernel::{Kernel, MountSpec};
use crate::policy::ReferenceValues;

#[test]
fn mount_runs_the_steps_in_order_and_unmount_reverses_them() {
    let e = env();
    let run = e.run();
    let r = e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    assert_eq!(r.rootfs, run.join("containers/c1/rootfs"));
    assert_eq!(r.layers.len(), 2);
    assert_eq!(r.layers[0].device, Path::new("/dev/mapper").join(dm(1)));
    assert_eq!(r.layers[0].root_hash, hex::encode(root(1)));
    assert!(!r.layers[0].shared);
    let l1 = run.join(format!("layers/sha256-{}", hex::encode(root(1))));
    let l2 = run.join(format!("layers/sha256-{}", hex::encode(root(2))));
    let expect = vec![
        "wait_disk disk with serial \"layer1\"".to_owned(),
        format!("dm_create {}", dm(1)),
        format!("dm_load {}", dm(1)),
        format!("dm_resume {}", dm(1)),
        format!("make_node /dev/mapper/{}", dm(1)),
        format!("mount {}", l1.display()),
        "wait_disk disk with serial \"layer2\"".to_owned(),
        format!("dm_create {}", dm(2)),
        format!("dm_load {}", dm(2)),
        format!("dm_resume {}", dm(2)),
        format!("make_node /dev/mapper/{}", dm(2)),
        format!("mount {}", l2.display()),
        "wait_disk disk with serial \"scratch-c1\"".to_owned(),
        format!("mount {}", run.join("containers/c1/upper").display()),
        format!("mount {}", run.join("containers/c1/rootfs").display()),
    ];
    assert_eq!(e.kernel.labels(), expect);

    // The dm table names the disk's device number and the plan's parameters.
    let load = e
        .kernel
        .calls()
        .into_iter()
        .find(|c| matches!(c, Call::DmLoad(..)))
        .unwrap();
    let Call::DmLoad(_, targets) = load else {
        unreachable!()
    };
    assert_eq!(targets[0].length, 80);
    assert!(
        targets[0].params.starts_with("1 254:"),
        "{}",
        targets[0].params
    );

    // The overlay gets the layers top first through short links.
    let mounts = e.kernel.mounts();
    let MountSpec::Overlay(o) = &mounts[&r.rootfs] else {
        panic!("no overlay")
    };
    assert_eq!(o.lowers, [PathBuf::from("l/0"), PathBuf::from("l/1")]);
    assert_eq!(std::fs::read_link(o.base.join("l/0")).unwrap(), l1);
    assert!(o.base.join("upper/upper").is_dir() && o.base.join("upper/work").is_dir());

    // Event log: one line per layer.
    let log = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let events: Vec<LayerEvent> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].root_hash, hex::encode(root(2)));
    assert_eq!(events[1].container_id, "c1");

    assert_eq!(e.agent.list().len(), 1);
    assert_eq!(e.agent.status().layers, 2);

    e.kernel.clear_calls();
    e.agent.unmount("c1").unwrap();
    let expect = vec![
        format!("unmount {}", run.join("containers/c1/rootfs").display()),
        format!("unmount {}", run.join("containers/c1/upper").display()),
        format!("unmount {}", l2.display()),
        format!("remove_node /dev/mapper/{}", dm(2)),
        format!("dm_remove {}", dm(2)),
        format!("unmount {}", l1.display()),
        format!("remove_node /dev/mapper/{}", dm(1)),
        format!("dm_remove {}", dm(1)),
    ];
    assert_eq!(e.kernel.labels(), expect);
    e.assert_clean();
    // Idempotent.
    e.agent.unmount("c1").unwrap();
    e.agent.unmount("never-mounted").unwrap();
}

#[test]
fn a_failure_at_any_step_undoes_everything_in_reverse_order() {
    // Fail each kernel call of a 2-layer mount in turn.
    let probe = env();
    probe.agent.mount(&plan("c1", &[1, 2])).unwrap();
    let steps = probe.kernel.labels();
    for i in 0..steps.len() {
        let e = env();
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let errno = if steps[i].starts_with("wait_disk") {
            EIO
        } else {
            EBUSY
        };
        e.kernel.fail_when(move |_| {
            (seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == i).then_some(errno)
        });
        let err = e.agent.mount(&plan("c1", &[1, 2])).unwrap_err();
        assert!(err.to_string().starts_with("container c1: "), "{err}");
        e.assert_clean();
        // What was created is undone last-first.
        let calls = e.kernel.labels();
        let done = &calls[..=i];
        let undone = &calls[i + 1..];
        let created: Vec<String> = done[..i]
            .iter()
            .filter(|l| {
                l.starts_with("mount ")
                    || l.starts_with("dm_create ")
                    || l.starts_with("make_node ")
            })
            .cloned()
            .collect();
        let undo_of = |l: &str| {
            l.replacen("mount ", "unmount ", 1)
                .replacen("dm_create ", "dm_remove ", 1)
                .replacen("make_node ", "remove_node ", 1)
        };
        let want: Vec<String> = created.iter().rev().map(|l| undo_of(l)).collect();
        assert_eq!(undone, want.as_slice(), "failing step {i}: {}", done[i]);
    }
}

#[test]
fn policy_refuses_before_any_kernel_call() {
    let e = env_with(|c| {
        let mut refs = ReferenceValues::default();
        refs.allow(&hex::encode(root(1)));
        c.reference_values = Some(refs);
        c.require_verity = true;
    });
    assert!(e.agent.status().confidential);
    let err = e.agent.mount(&plan("c1", &[1, 2])).unwrap_err();
    assert_eq!(err.kind(), Kind::PermissionDenied);
    assert!(err.to_string().contains("layer 1"), "{err}");
    assert!(e.kernel.calls().is_empty(), "{:?}", e.kernel.labels());
    e.assert_clean();

    let mut p = plan("c1", &[1]);
    p.layers.push(layer(2, false));
    let err = e.agent.mount(&p).unwrap_err();
    assert_eq!(err.kind(), Kind::PermissionDenied);
    assert!(e.kernel.calls().is_empty());
    e.agent.mount(&plan("c1", &[1])).unwrap();
}

#[test]
fn one_hundred_twenty_eight_layers() {
    let e = env();
    let layers: Vec<u8> = (1..=128).collect();
    let r = e.agent.mount(&plan("c1", &layers)).unwrap();
    assert_eq!(r.layers.len(), 128);
    let mounts = e.kernel.mounts();
    let MountSpec::Overlay(o) = &mounts[&r.rootfs] else {
        panic!("no overlay")
    };
    assert_eq!(o.lowers.len(), 128);
    let opts = crate::overlay::legacy_options(o, 4096).unwrap();
    assert!(opts.len() < 4096);
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn mounting_twice_is_already_exists_and_changes_nothing() {
    let e = env();
    e.agent.mount(&plan("c1", &[1])).unwrap();
    let n = e.kernel.calls().len();
    let err = e.agent.mount(&plan("c1", &[2])).unwrap_err();
    assert_eq!(err.kind(), Kind::AlreadyExists);
    assert_eq!(e.kernel.calls().len(), n);
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn a_busy_rootfs_fails_unmount_and_can_be_retried() {
    let e = env();
    e.agent.mount(&plan("c1", &[1])).unwrap();
    e.kernel
        .fail_when(|c| matches!(c, Call::Unmount(p) if p.ends_with("rootfs")).then_some(EBUSY));
    let err = e.agent.unmount("c1").unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert_eq!(e.agent.list().len(), 1);
    e.kernel.clear_failures();
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn a_second_agent_process_sees_the_state_and_unmounts() {
    let e = env();
    e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    // A one-shot `unmount` runs in a new process: a new agent on the same run dir, once
    // the first one is gone.
    let config = e.agent.config().clone();
    let Env {
        dir: _dir,
        kernel,
        agent,
    } = e;
    drop(agent);
    let again = Agent::with_kernel(config, kernel.clone()).unwrap();
    assert_eq!(again.list().len(), 1);
    assert_eq!(again.status().layers, 2);
    let r = again.mount(&plan("c2", &[2])).unwrap();
    assert!(r.layers[0].shared);
    again.unmount("c1").unwrap();
    again.unmount("c2").unwrap();
    assert!(kernel.mounts().is_empty());
    assert!(kernel.dm_devices().is_empty());
}

#[test]
fn containers_mount_in_parallel() {
    let e = Arc::new(env());
    let threads: Vec<_> = ["c1", "c2", "c3"]
        .into_iter()
        .map(|id| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || e.agent.mount(&plan(id, &[1, 2, 3])).map(|r| r.layers))
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    // Each layer was set up by exactly one of them.
    for i in 0..3 {
        assert_eq!(results.iter().filter(|r| !r[i].shared).count(), 1);
    }
    for n in 1..=3 {
        assert_eq!(e.kernel.count(&format!("dm_create {}", dm(n))), 1);
    }
    for id in ["c1", "c2", "c3"] {
        e.agent.unmount(id).unwrap();
    }
    e.assert_clean();
}

#[test]
fn unmount_finishes_what_someone_else_started() {
    let e = env();
    let r = e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    // The rootfs and one layer's node were removed behind the agent's back.
    e.kernel.unmount(&r.rootfs).unwrap();
    e.kernel.remove_node(&r.layers[1].device).unwrap();
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
}

#[test]
fn a_mount_point_that_would_hide_something_is_refused_before_any_kernel_call() {
    let e = env();
    let full = e.dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("passwd"), "root").unwrap();
    let link = e.dir.path().join("link");
    std::os::unix::fs::symlink(&full, &link).unwrap();
    for (mp, why) in [(&full, "is not empty"), (&link, "is a symlink")] {
        let mut p = plan("c1", &[1]);
        p.mount_point = Some(mp.clone());
        let err = e.agent.mount(&p).unwrap_err();
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        assert!(err.to_string().contains(why), "{err}");
    }
    assert!(e.kernel.calls().is_empty());
    // An empty (or missing) directory is fine, and a missing one is removed again.
    let mut p = plan("c1", &[1]);
    let fresh = e.dir.path().join("a/b/rootfs");
    p.mount_point = Some(fresh.clone());
    assert_eq!(e.agent.mount(&p).unwrap().rootfs, fresh);
    e.agent.unmount("c1").unwrap();
    assert!(!e.dir.path().join("a").exists());
    e.assert_clean();
}

#[test]
fn the_agent_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Agent>();
    shared::<FakeKernel>();
}

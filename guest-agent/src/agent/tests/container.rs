//! Container lifecycle: the order of kernel calls, rollback, locks, mount points.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerpass_protocols::status::Kind;

use super::*;
use crate::agent::encrypted;
use crate::events::LayerEvent;
use crate::kernel::fake::Call;
use crate::kernel::{Kernel, MountSpec};
use crate::policy::ReferenceValues;
use std::time::Duration;

#[test]
fn mount_runs_the_steps_in_order_and_unmount_reverses_them() {
    let e = env();
    let run = e.run();
    let r = e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    assert_eq!(r.rootfs, run.join("rootfs/c1"));
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
        format!("read /dev/mapper/{} 1024+128", dm(1)),
        format!("mount {}", l1.display()),
        "wait_disk disk with serial \"layer2\"".to_owned(),
        format!("dm_create {}", dm(2)),
        format!("dm_load {}", dm(2)),
        format!("dm_resume {}", dm(2)),
        format!("make_node /dev/mapper/{}", dm(2)),
        format!("read /dev/mapper/{} 1024+128", dm(2)),
        format!("mount {}", l2.display()),
        "wait_disk disk with serial \"scratch-c1\"".to_owned(),
        format!("mount {}", run.join("containers/c1/upper").display()),
        format!("mount {}", run.join("rootfs/c1").display()),
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
        format!("unmount {}", run.join("rootfs/c1").display()),
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
    let tmpfs = |mut p: MountPlan| {
        p.upper = UpperSpec::Tmpfs {
            size_bytes: 1 << 20,
        };
        p
    };
    // Confidential mode: the host's scratch disk is no upper.
    let err = e.agent.mount(&plan("c1", &[1])).unwrap_err();
    assert_eq!(err.kind(), Kind::PermissionDenied);
    assert!(
        err.to_string().contains("upper: a scratch-disk upper"),
        "{err}"
    );
    assert!(e.kernel.calls().is_empty(), "{:?}", e.kernel.labels());
    let err = e.agent.mount(&tmpfs(plan("c1", &[1, 2]))).unwrap_err();
    assert_eq!(err.kind(), Kind::PermissionDenied);
    assert!(err.to_string().contains("layer 1"), "{err}");
    assert!(e.kernel.calls().is_empty(), "{:?}", e.kernel.labels());
    e.assert_clean();

    let mut p = tmpfs(plan("c1", &[1]));
    p.layers.push(layer(2, false));
    let err = e.agent.mount(&p).unwrap_err();
    assert_eq!(err.kind(), Kind::PermissionDenied);
    assert!(e.kernel.calls().is_empty());
    e.agent.mount(&tmpfs(plan("c1", &[1]))).unwrap();
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
        .fail_when(|c| matches!(c, Call::Unmount(p) if p.ends_with("rootfs/c1")).then_some(EBUSY));
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
fn hostile_mount_points_are_refused_before_any_kernel_call() {
    let e = env();
    let root = e.run().join("rootfs");
    // Things a plan could aim at: a non-empty directory, a symlink out of the root, a
    // file, and another container's rootfs.
    std::fs::create_dir(root.join("full")).unwrap();
    std::fs::write(root.join("full/passwd"), "root").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    std::os::unix::fs::symlink(e.run(), root.join("run-link")).unwrap();
    std::fs::write(root.join("file"), "x").unwrap();
    e.agent.mount(&plan("c2", &[2])).unwrap();
    e.kernel.clear_calls();
    for (mp, kind, why) in [
        ("/etc", Kind::InvalidArgument, "is absolute"),
        (
            "/run/layerpass/containers/evil",
            Kind::InvalidArgument,
            "is absolute",
        ),
        ("../containers/evil", Kind::InvalidArgument, "'..'"),
        ("full", Kind::PermissionDenied, "is not empty"),
        ("etc-link", Kind::PermissionDenied, "etc-link is a symlink"),
        (
            "etc-link/x",
            Kind::PermissionDenied,
            "etc-link is a symlink",
        ),
        (
            "run-link/containers/evil",
            Kind::PermissionDenied,
            "run-link is a symlink",
        ),
        ("file", Kind::PermissionDenied, "file is not a directory"),
        (
            "c2",
            Kind::PermissionDenied,
            "overlaps container c2's rootfs c2",
        ),
        (
            "c2/etc",
            Kind::PermissionDenied,
            "overlaps container c2's rootfs c2",
        ),
    ] {
        let mut p = plan("c1", &[1]);
        p.mount_point = Some(PathBuf::from(mp));
        let err = e.agent.mount(&p).unwrap_err();
        assert_eq!(err.kind(), kind, "{mp}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("mount_point") && text.contains(why),
            "{mp}: {text}"
        );
        assert!(e.kernel.calls().is_empty(), "{mp}: {:?}", e.kernel.labels());
    }
    assert!(!root.join("full/passwd").metadata().unwrap().is_dir());
    assert!(!e.run().join("containers/evil").exists());
    // A nested mount point is created (and removed on unmount) beneath the root.
    let mut p = plan("c1", &[1]);
    p.mount_point = Some(PathBuf::from("a/b/rootfs"));
    assert_eq!(e.agent.mount(&p).unwrap().rootfs, root.join("a/b/rootfs"));
    // Its parents are no one else's mount point either.
    let mut q = plan("c3", &[3]);
    q.mount_point = Some(PathBuf::from("a"));
    assert_eq!(
        e.agent.mount(&q).unwrap_err().kind(),
        Kind::PermissionDenied
    );
    e.agent.unmount("c1").unwrap();
    e.agent.unmount("c2").unwrap();
    assert!(!root.join("a").exists());
    e.assert_clean();
}

#[test]
fn the_agent_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Agent>();
    shared::<FakeKernel>();
}

/// A record for container `name` claiming layer 3 (root hash 3) is mounted, consistent in
/// every field: what a forged `state.json` must look like to be trusted.
fn forged_record(e: &Env, name: &str) -> serde_json::Value {
    let run = e.run();
    let key = format!("sha256-{}", hex::encode(root(3)));
    let mut verity = serde_json::to_value(layer(3, true).verity.unwrap()).unwrap();
    verity["root_hash"] = serde_json::to_value(root(3)).unwrap();
    serde_json::json!({
        "container_id": name,
        "dir": run.join("containers").join(name),
        "mount_point": name,
        "rootfs": run.join("rootfs").join(name),
        "created_dirs": [run.join("rootfs").join(name)],
        "upper": {
            "mount_dir": run.join("containers").join(name).join("upper"),
            "device": null,
            "spec": {"Tmpfs": {"size_bytes": 1}},
        },
        "layers": [{
            "key": key,
            "digest": format!("sha256:{}", hex::encode([3u8; 32])),
            "root_hash": hex::encode(root(3)),
            "dm_name": dm(3),
            "node_created": true,
            "device": format!("/dev/mapper/{}", dm(3)),
            "mount_dir": run.join("layers").join(&key),
            "verity": verity,
        }],
        "shared": [false],
        "digests": [format!("sha256:{}", hex::encode([3u8; 32]))],
    })
}

#[test]
fn forged_state_records_are_skipped_and_never_trusted() {
    let e = env();
    e.agent.mount(&plan("c1", &[1])).unwrap();
    let config = e.agent.config().clone();
    let run = e.run();
    let expected = crate::state::Expected {
        run_dir: &config.run_dir,
        rootfs_root: &config.rootfs_root,
        dm_dir: PathBuf::from("/dev/mapper"),
    };
    // The baseline is what the agent itself would write: accepted.
    let good: crate::state::ContainerRecord =
        serde_json::from_value(forged_record(&e, "good")).unwrap();
    crate::state::check_record(&good, "good", &expected).unwrap();

    type Forge = fn(&mut serde_json::Value);
    let forgeries: &[(&str, Forge)] = &[
        ("other-id", |r| r["container_id"] = "c1".into()),
        ("host-files", |r| {
            r["layers"][0]["mount_dir"] = "/forged".into();
        }),
        ("dm-name", |r| r["layers"][0]["dm_name"] = "control".into()),
        ("device", |r| r["layers"][0]["device"] = "/dev/vda".into()),
        ("root-hash", |r| {
            r["layers"][0]["root_hash"] = hex::encode([4u8; 32]).into();
        }),
        ("key", |r| r["layers"][0]["key"] = "../../etc".into()),
        ("rootfs", |r| r["rootfs"] = "/etc".into()),
        ("created", |r| {
            r["created_dirs"] = serde_json::json!(["/etc"]);
        }),
        ("upper", |r| r["upper"]["mount_dir"] = "/etc".into()),
        ("mount-point", |r| r["mount_point"] = "../containers".into()),
        ("shared", |r| r["shared"] = serde_json::json!([])),
        ("digests", |r| {
            r["digests"] = serde_json::json!(["sha256:x"]);
        }),
        ("upper-spec", |r| {
            r["upper"]["spec"] =
                serde_json::json!({"Disk": {"disk": {"Serial": "s"}, "fs_type": "ext4"}});
        }),
    ];
    for (name, forge) in forgeries {
        let mut r = forged_record(&e, name);
        forge(&mut r);
        let dir = run.join("containers").join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("state.json"), serde_json::to_vec(&r).unwrap()).unwrap();
    }
    // Not JSON; a symlinked state file; a symlinked container directory; a directory
    // name that is no container id.
    std::fs::create_dir(run.join("containers/garbage")).unwrap();
    std::fs::write(run.join("containers/garbage/state.json"), "{").unwrap();
    std::fs::create_dir(run.join("containers/linked")).unwrap();
    let outside = e.dir.path().join("outside.json");
    std::fs::write(
        &outside,
        serde_json::to_vec(&forged_record(&e, "linked")).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, run.join("containers/linked/state.json")).unwrap();
    let elsewhere = e.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("state.json"),
        serde_json::to_vec(&forged_record(&e, "dirlink")).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&elsewhere, run.join("containers/dirlink")).unwrap();
    std::fs::create_dir(run.join("containers/-bad")).unwrap();
    std::fs::write(
        run.join("containers/-bad/state.json"),
        serde_json::to_vec(&forged_record(&e, "-bad")).unwrap(),
    )
    .unwrap();

    let Env {
        dir: _dir,
        kernel,
        agent,
    } = e;
    drop(agent);
    let again = Agent::with_kernel(config, kernel.clone()).unwrap();
    let ids: Vec<_> = again.list().into_iter().map(|c| c.container_id).collect();
    assert_eq!(ids, ["c1"]);
    assert_eq!(again.status().layers, 1);
    // A later plan naming root hash 3 gets its own verified device.
    kernel.clear_calls();
    let r = again.mount(&plan("c2", &[3])).unwrap();
    assert!(!r.layers[0].shared);
    assert_eq!(kernel.count(&format!("dm_create {}", dm(3))), 1);
    again.unmount("c2").unwrap();
    again.unmount("c1").unwrap();
}

#[test]
fn a_symlinked_upper_or_work_on_the_upper_filesystem_is_refused() {
    for sub in ["upper", "work"] {
        let e = env();
        let sub = sub.to_owned();
        // The host wrote the scratch disk: `upper` (or `work`) is a symlink to /etc.
        e.kernel.when_mounted(move |spec, target| {
            if matches!(spec, MountSpec::Disk { .. }) {
                std::os::unix::fs::symlink("/etc", target.join(&sub)).unwrap();
            }
        });
        let err = e.agent.mount(&plan("c1", &[1])).unwrap_err();
        assert_eq!(err.kind(), Kind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert!(
            !e.kernel.labels().iter().any(|l| l.contains("rootfs/c1")),
            "{:?}",
            e.kernel.labels()
        );
        e.assert_clean();
    }
}

#[test]
fn the_run_directory_is_private_even_if_it_existed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _agent = Agent::with_kernel(
        AgentConfig::with_run_dir(run.clone()),
        Arc::new(FakeKernel::new()),
    )
    .unwrap();
    let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

#[test]
fn a_rootfs_root_overlapping_the_run_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for (root, why) in [
        (run.clone(), "holds the run directory"),
        (dir.path().to_owned(), "holds the run directory"),
        (
            run.join("containers"),
            "inside the run directory's containers/",
        ),
        (
            run.join("containers/evil"),
            "inside the run directory's containers/",
        ),
        (run.join("layers/x"), "inside the run directory's layers/"),
    ] {
        let mut config = AgentConfig::with_run_dir(run.clone());
        config.rootfs_root.clone_from(&root);
        let err = Agent::with_kernel(config, Arc::new(FakeKernel::new())).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidArgument, "{}", root.display());
        assert!(err.to_string().contains(why), "{err}");
    }
    // A sibling of the run directory, or its own rootfs/, is fine.
    let mut config = AgentConfig::with_run_dir(run.clone());
    config.rootfs_root = dir.path().join("rootfs");
    Agent::with_kernel(config, Arc::new(FakeKernel::new())).unwrap();
}

#[test]
fn the_overlay_goes_on_the_directory_checked_even_if_the_path_is_swapped_after() {
    let e = env();
    let root = e.run().join("rootfs");
    let elsewhere = e.dir.path().join("etc");
    std::fs::create_dir(&elsewhere).unwrap();
    // Between the checks and the overlay mount (the upper is mounted in between), the
    // checked directory is moved away and its path made a symlink to elsewhere.
    let (r, x) = (root.clone(), elsewhere.clone());
    e.kernel.when_mounted(move |spec, _| {
        if matches!(spec, MountSpec::Disk { .. }) {
            std::fs::rename(r.join("c1"), r.join("c1-moved")).unwrap();
            std::os::unix::fs::symlink(&x, r.join("c1")).unwrap();
        }
    });
    e.agent.mount(&plan("c1", &[1])).unwrap();
    let mounts = e.kernel.mounts();
    assert!(
        matches!(
            mounts.get(&root.join("c1-moved")),
            Some(MountSpec::Overlay(_))
        ),
        "{:?}",
        mounts.keys()
    );
    assert!(
        !mounts.contains_key(&elsewhere) && !mounts.contains_key(&root.join("c1")),
        "{:?}",
        mounts.keys()
    );
}

fn encrypted(mut p: MountPlan) -> MountPlan {
    p.upper = UpperSpec::EncryptedDisk {
        disk: DiskRef::Serial(format!("scratch-{}", p.container_id)),
    };
    p
}

/// Every file under `dir`, recursively, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files_under(&p));
        } else if meta.is_file() {
            out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
        }
    }
    out
}

#[test]
fn an_encrypted_disk_upper_is_integrity_then_aead_crypt_then_ext2_with_a_fresh_key() {
    let confidential = |c: &mut AgentConfig| {
        let mut refs = ReferenceValues::default();
        refs.allow(&hex::encode(root(1)));
        c.reference_values = Some(refs);
        c.require_verity = true;
    };
    for e in [env(), env_with(confidential)] {
        let scratch = e
            .kernel
            .wait_disk(&DiskRef::Serial("scratch-c1".into()), Duration::ZERO)
            .unwrap()
            .unwrap();
        let names = encrypted::dm_names(scratch.dev);
        let node = format!("/dev/mapper/{}", names.crypt);
        let mut keys = Vec::new();
        for round in 0..2 {
            e.kernel.clear_calls();
            e.agent.mount(&encrypted(plan("c1", &[1]))).unwrap();
            let labels = e.kernel.labels();
            let order = [
                format!("zero_blocks {}", scratch.path.display()),
                format!("dm_create {}", names.format),
                format!("dm_load {}", names.format),
                format!("dm_remove {}", names.format),
                format!("dm_create {}", names.integrity),
                format!("dm_load {}", names.integrity),
                format!("dm_resume {}", names.integrity),
                format!("dm_create {}", names.crypt),
                format!("dm_load {}", names.crypt),
                format!("dm_resume {}", names.crypt),
                format!("make_node {node}"),
                format!("zero_blocks {node}"),
                format!("make_ext2 {node}"),
            ];
            let at: Vec<usize> = order
                .iter()
                .map(|l| {
                    labels
                        .iter()
                        .position(|x| x == l)
                        .unwrap_or_else(|| panic!("{l}: {labels:?}"))
                })
                .collect();
            assert!(at.is_sorted(), "{labels:?}");
            // The fake formats 2^20 sectors to 2^20 - 2^16 data sectors.
            let provided = (1u64 << 20) - (1 << 16);
            let integrity = e.kernel.table(&names.integrity).unwrap();
            assert_eq!(integrity[0].length, provided);
            assert_eq!(
                integrity[0].params,
                format!("{} 0 32 D 1 block_size:4096", scratch.dev)
            );
            let crypt = e.kernel.table(&names.crypt).unwrap();
            assert_eq!(crypt[0].length, provided);
            let fields: Vec<&str> = crypt[0].params.split(' ').collect();
            assert_eq!(fields[0], "capi:aegis128-random");
            assert_eq!(
                &fields[2..],
                [
                    "0",
                    fields[3],
                    "0",
                    "2",
                    "integrity:32:aead",
                    "sector_size:4096"
                ]
            );
            let key = fields[1].to_owned();
            assert!(
                key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key}"
            );
            // The upper is the crypt device, ext4 (the ext4 driver mounts the ext2).
            let upper = e.run().join("containers/c1/upper");
            assert_eq!(
                e.kernel.mounts().get(&upper),
                Some(&MountSpec::Disk {
                    source: PathBuf::from(&node),
                    fs_type: "ext4".into()
                })
            );
            // The key is in no file the agent wrote (state, events, anything).
            for base in [e.run(), e.agent.config().rootfs_root.clone()] {
                for (path, bytes) in files_under(&base) {
                    let text = String::from_utf8_lossy(&bytes);
                    assert!(
                        !text.contains(&key) && !text.contains(&key.to_uppercase()),
                        "round {round}: the key is in {}",
                        path.display()
                    );
                }
            }
            keys.push(key);
            e.agent.unmount("c1").unwrap();
            assert!(
                e.kernel.dm_devices().is_empty(),
                "{:?}",
                e.kernel.dm_devices()
            );
        }
        assert_ne!(keys[0], keys[1], "every mount makes a new key");
        e.assert_clean();
    }
}

#[test]
fn a_failed_encrypted_upper_leaves_nothing_and_names_the_step() {
    for failing in ["make_ext2", "dm_load crypt", "zero_blocks"] {
        let e = env();
        let scratch = e
            .kernel
            .wait_disk(&DiskRef::Serial("scratch-c1".into()), Duration::ZERO)
            .unwrap()
            .unwrap();
        let names = encrypted::dm_names(scratch.dev);
        let crypt = names.crypt.clone();
        let f = failing.to_owned();
        e.kernel.fail_when(move |c| {
            let hit = match (f.as_str(), c) {
                ("make_ext2", Call::MakeExt2(_)) | ("zero_blocks", Call::ZeroBlocks(..)) => true,
                ("dm_load crypt", Call::DmLoad(n, _)) => *n == crypt,
                _ => false,
            };
            hit.then_some(5) // EIO
        });
        let err = e.agent.mount(&encrypted(plan("c1", &[1]))).unwrap_err();
        assert!(
            err.to_string().contains("mount upper: "),
            "{failing}: {err}"
        );
        assert!(
            !err.to_string().contains("aegis"),
            "{failing}: the table is not in the error: {err}"
        );
        e.kernel.clear_failures();
        assert!(
            e.kernel.dm_devices().is_empty(),
            "{failing}: {:?}",
            e.kernel.dm_devices()
        );
        assert!(
            e.kernel.nodes().is_empty(),
            "{failing}: {:?}",
            e.kernel.nodes()
        );
        e.assert_clean();
    }
}

/// Turns c1's saved record (mounted with a plain scratch disk) into the record of an
/// encrypted upper stacked as `names` (crypt first), as the set-up will write it.
fn make_encrypted_record(e: &Env, names: &[&str]) {
    let path = e.run().join("containers/c1/state.json");
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    r["upper"]["spec"] = serde_json::json!({"EncryptedDisk": {"disk": {"Serial": "scratch-c1"}}});
    r["upper"]["device"] = format!("/dev/mapper/{}", names[0]).into();
    r["upper"]["dm_devices"] = serde_json::json!(names);
    std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
}

/// A new agent on `e`'s run directory and kernel (the first one is dropped).
fn reload(e: Env) -> (tempfile::TempDir, Arc<FakeKernel>, Agent) {
    let config = e.agent.config().clone();
    let Env { dir, kernel, agent } = e;
    drop(agent);
    let again = Agent::with_kernel(config, kernel.clone()).unwrap();
    (dir, kernel, again)
}

#[test]
fn unmount_removes_an_encrypted_uppers_dm_devices_after_the_upper_crypt_first() {
    let names = ["lp-up-254-16-crypt", "lp-up-254-16-integrity"];
    let e = env();
    e.agent.mount(&plan("c1", &[1])).unwrap();
    for name in names.iter().rev() {
        let dev = e.kernel.dm_create(name, name).unwrap();
        e.kernel
            .make_block_node(&e.kernel.dm_node_path(name), dev)
            .unwrap();
    }
    make_encrypted_record(&e, &names);
    let upper = e.run().join("containers/c1/upper");
    let (dir, kernel, agent) = reload(e);
    assert_eq!(agent.list().len(), 1, "the encrypted record is loaded");
    kernel.clear_calls();
    agent.unmount("c1").unwrap();
    let labels = kernel.labels();
    let at = |l: &str| {
        labels
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("{l} not in {labels:?}"))
    };
    let order = [
        format!("unmount {}", upper.display()),
        "remove_node /dev/mapper/lp-up-254-16-crypt".to_owned(),
        "dm_remove lp-up-254-16-crypt".to_owned(),
        "remove_node /dev/mapper/lp-up-254-16-integrity".to_owned(),
        "dm_remove lp-up-254-16-integrity".to_owned(),
    ];
    let positions: Vec<usize> = order.iter().map(|l| at(l)).collect();
    assert!(positions.is_sorted(), "{labels:?}");
    // The unmount event names the upper's kind and serial, nothing else of it.
    let log = std::fs::read_to_string(dir.path().join("run/events.jsonl")).unwrap();
    let last: LayerEvent = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(
        serde_json::to_value(&last.upper).unwrap(),
        serde_json::json!({"kind": "encrypted-disk", "serial": "scratch-c1", "partition": null})
    );
    Env { dir, kernel, agent }.assert_clean();
}

#[test]
fn an_encrypted_uppers_dm_devices_already_gone_or_busy() {
    let names = ["lp-up-254-16-crypt", "lp-up-254-16-integrity"];
    // Already gone (an earlier attempt, or someone else, removed them): unmount succeeds.
    let e = env();
    e.agent.mount(&plan("c1", &[1])).unwrap();
    make_encrypted_record(&e, &names);
    let (dir, kernel, agent) = reload(e);
    agent.unmount("c1").unwrap();
    assert_eq!(kernel.count("dm_remove lp-up-254-16-integrity"), 1);
    Env { dir, kernel, agent }.assert_clean();

    // Busy: the first failure stops the removals, the state stays, a retry finishes.
    let e = env();
    e.agent.mount(&plan("c1", &[1])).unwrap();
    for name in names.iter().rev() {
        e.kernel.dm_create(name, name).unwrap();
    }
    make_encrypted_record(&e, &names);
    let (dir, kernel, agent) = reload(e);
    kernel.fail_when(|c| (*c == Call::DmRemove("lp-up-254-16-crypt".into())).then_some(EBUSY));
    let err = agent.unmount("c1").unwrap_err();
    assert!(
        err.to_string()
            .contains("removing upper dm device lp-up-254-16-crypt"),
        "{err}"
    );
    assert_eq!(kernel.count("dm_remove lp-up-254-16-integrity"), 0);
    assert_eq!(agent.list().len(), 1);
    assert!(dir.path().join("run/containers/c1/state.json").exists());
    kernel.clear_failures();
    agent.unmount("c1").unwrap();
    assert!(agent.list().is_empty());
    Env { dir, kernel, agent }.assert_clean();
}

#[test]
fn encrypted_upper_records_are_checked_like_the_others() {
    let e = env();
    let config = e.agent.config().clone();
    let expected = crate::state::Expected {
        run_dir: &config.run_dir,
        rootfs_root: &config.rootfs_root,
        dm_dir: PathBuf::from("/dev/mapper"),
    };
    let check = |r: &serde_json::Value| {
        let record: crate::state::ContainerRecord = serde_json::from_value(r.clone()).unwrap();
        crate::state::check_record(&record, "good", &expected)
    };
    // Records written before encrypted uppers have no dm_devices: they load, empty.
    let old = forged_record(&e, "good");
    let record: crate::state::ContainerRecord = serde_json::from_value(old.clone()).unwrap();
    assert!(record.upper.dm_devices.is_empty());
    check(&old).unwrap();

    let mut good = old;
    good["upper"]["spec"] = serde_json::json!({"EncryptedDisk": {"disk": {"Serial": "s"}}});
    good["upper"]["device"] = "/dev/mapper/lp-up-254-32-crypt".into();
    good["upper"]["dm_devices"] =
        serde_json::json!(["lp-up-254-32-crypt", "lp-up-254-32-integrity"]);
    check(&good).unwrap();
    // It round-trips.
    let record: crate::state::ContainerRecord = serde_json::from_value(good.clone()).unwrap();
    let again: crate::state::ContainerRecord =
        serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(again, record);

    type Forge = fn(&mut serde_json::Value);
    let forgeries: &[(&str, Forge)] = &[
        ("no-dm-devices", |r| {
            r["upper"]["dm_devices"] = serde_json::json!([]);
        }),
        ("no-device", |r| {
            r["upper"]["device"] = serde_json::Value::Null;
        }),
        ("not-the-crypt-node", |r| {
            r["upper"]["device"] = "/dev/mapper/lp-up-254-32-integrity".into();
        }),
        ("device-elsewhere", |r| {
            r["upper"]["device"] = "/dev/vda".into();
        }),
        ("control", |r| {
            r["upper"]["dm_devices"][1] = "control".into();
        }),
        ("unprefixed", |r| {
            r["upper"]["dm_devices"][1] = "root".into();
        }),
        ("prefix-only", |r| {
            r["upper"]["dm_devices"][1] = "lp-".into();
        }),
        ("slash", |r| {
            r["upper"]["dm_devices"][1] = "lp-../../sda".into();
        }),
        ("long", |r| {
            r["upper"]["dm_devices"][1] = format!("lp-{}", "a".repeat(125)).into();
        }),
        ("twice", |r| {
            r["upper"]["dm_devices"][1] = "lp-up-254-32-crypt".into();
        }),
        ("too-many", |r| {
            r["upper"]["dm_devices"] =
                serde_json::json!(["lp-up-254-32-crypt", "lp-a", "lp-b", "lp-c", "lp-d"]);
        }),
        ("a-layers-device", |r| {
            r["upper"]["dm_devices"][1] = dm(3).into();
        }),
        ("on-a-tmpfs", |r| {
            r["upper"]["spec"] = serde_json::json!({"Tmpfs": {"size_bytes": 1}});
            r["upper"]["device"] = serde_json::Value::Null;
        }),
        ("on-a-plain-disk", |r| {
            r["upper"]["spec"] =
                serde_json::json!({"Disk": {"disk": {"Serial": "s"}, "fs_type": "ext4"}});
        }),
    ];
    for (name, forge) in forgeries {
        let mut r = good.clone();
        forge(&mut r);
        assert!(check(&r).is_err(), "{name} accepted");
    }
    // Well-formed names that are not the pair the agent makes are refused too.
    for pair in [
        ["lp-up-254-32-crypt", "lp-up-254-48-integrity"],
        ["lp-up-254-32-integrity", "lp-up-254-32-crypt"],
        ["lp-c1-crypt", "lp-c1-integrity"],
    ] {
        let mut r = good.clone();
        r["upper"]["device"] = format!("/dev/mapper/{}", pair[0]).into();
        r["upper"]["dm_devices"] = serde_json::json!(pair);
        assert!(check(&r).is_err(), "{pair:?} accepted");
    }
}

/// Layers set up by several threads: the merged view keeps the plan's order, every layer
/// is mounted once, and a failure at any kernel call of any layer still undoes
/// everything (the layers other threads had finished included).
#[test]
fn layers_set_up_in_parallel_keep_their_order_and_roll_back_completely() {
    let layers: Vec<u8> = (1..=12).collect();
    let parallel = |c: &mut AgentConfig| c.setup_threads = 4;
    let e = env_with(parallel);
    let result = e.agent.mount(&plan("c1", &layers)).unwrap();
    let sequential = env();
    let expected = sequential.agent.mount(&plan("c1", &layers)).unwrap();
    assert_eq!(result.layers.len(), 12);
    let digests = |r: &crate::plan::MountResult| {
        r.layers
            .iter()
            .map(|l| l.digest.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&result), digests(&expected), "the plan's order");
    assert_eq!(e.kernel.dm_devices().len(), 12);
    e.agent.unmount("c1").unwrap();
    e.assert_clean();

    let calls = env_with(parallel);
    calls.agent.mount(&plan("c1", &layers)).unwrap();
    let steps = calls.kernel.labels().len();
    for i in 0..steps {
        let e = env_with(parallel);
        let seen = std::sync::atomic::AtomicUsize::new(0);
        e.kernel.fail_when(move |_| {
            (seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == i).then_some(EBUSY)
        });
        let err = e.agent.mount(&plan("c1", &layers)).unwrap_err();
        assert!(err.to_string().starts_with("container c1: "), "{err}");
        e.assert_clean();
    }
}

//! Recorders: every recorder sees each mounted container's layers, in order; a failing
//! recorder fails the mount, which is undone.

use std::io;
use std::sync::Mutex;

use layerpass_protocols::status::Kind;

use super::*;
use crate::error::Step;
use crate::events::{LayerEvent, RecordError, Recorder};
use crate::sync::lock;

/// Keeps what it is given.
#[derive(Debug, Default, Clone)]
struct Kept(Arc<Mutex<Vec<LayerEvent>>>);

impl Recorder for Kept {
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError> {
        lock(&self.0).extend_from_slice(events);
        Ok(())
    }
}

/// Fails with an errno, or with a cause that is not an I/O error.
#[derive(Debug)]
struct Failing(Option<Errno>);

impl Recorder for Failing {
    fn record(&self, _events: &[LayerEvent]) -> Result<(), RecordError> {
        Err(match self.0 {
            Some(errno) => RecordError::new("extending the test register", io::Error::from(errno)),
            None => RecordError::new("extending the test register", "the register is sealed"),
        })
    }
}

fn event_log(e: &Env) -> Vec<LayerEvent> {
    std::fs::read_to_string(e.run().join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_second_recorder_gets_the_same_events_as_the_log_in_the_same_order() {
    let kept = Kept::default();
    let e = env_built(|_| {}, |agent| agent.with_recorder(kept.clone()));
    e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    // A mount that fails before recording records nothing.
    let mut missing = plan("c3", &[4]);
    missing.layers[0].disk = DiskRef::Serial("absent".into());
    e.agent.mount(&missing).unwrap_err();
    e.agent.mount(&plan("c2", &[3, 2])).unwrap();

    let got = lock(&kept.0).clone();
    assert_eq!(got, event_log(&e));
    let order: Vec<(&str, String)> = got
        .iter()
        .map(|ev| (ev.container_id.as_str(), ev.root_hash.clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("c1", hex::encode(root(1))),
            ("c1", hex::encode(root(2))),
            ("c2", hex::encode(root(3))),
            ("c2", hex::encode(root(2))),
        ]
    );
}

#[test]
fn a_failing_recorder_fails_the_mount_and_it_is_undone() {
    for (errno, kind) in [
        (Some(Errno::ACCESS), Kind::PermissionDenied),
        (None, Kind::Internal),
    ] {
        let kept = Kept::default();
        let e = env_built(
            |_| {},
            |agent| {
                agent
                    .with_recorder(Failing(errno))
                    .with_recorder(kept.clone())
            },
        );
        let err = e.agent.mount(&plan("c1", &[1, 2])).unwrap_err();
        assert_eq!(err.step(), Step::EventLog, "{err}");
        assert_eq!(err.kind(), kind, "{err}");
        assert!(
            err.to_string()
                .starts_with("container c1: event log: extending the test register"),
            "{err}"
        );
        // The cause is the error's source, printed by the chain.
        let cause = match errno {
            Some(errno) => io::Error::from(errno).to_string(),
            None => "the register is sealed".to_owned(),
        };
        assert!(
            err.chain()
                .to_string()
                .ends_with(&format!("register: {cause}")),
            "{err}"
        );
        e.assert_clean();
        assert!(e.agent.list().is_empty());
        // The recorders after the failing one are not called; the log before it keeps
        // what it wrote.
        assert!(lock(&kept.0).is_empty());
        assert_eq!(event_log(&e).len(), 2);
    }
}

#[test]
fn events_carry_this_plans_digest_the_device_geometry_the_upper_and_the_mount_point() {
    use crate::events::{EventKind, UpperEvent};
    let kept = Kept::default();
    let e = env_built(|_| {}, |agent| agent.with_recorder(kept.clone()));
    e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    // c2 shares layer 2 (same root hash) under another digest, asks for panic on
    // corruption, and has a tmpfs upper at its own mount point.
    let mut p2 = plan("c2", &[2]);
    p2.layers[0].digest = format!("sha256:{}", hex::encode([0x77; 32]));
    p2.layers[0].verity.as_mut().unwrap().on_corruption = CorruptionMode::Panic;
    p2.upper = UpperSpec::Tmpfs { size_bytes: 4096 };
    p2.mount_point = Some(PathBuf::from("web/c2"));
    let r2 = e.agent.mount(&p2).unwrap();
    assert_eq!(
        r2.layers[0].digest, p2.layers[0].digest,
        "this plan's digest"
    );
    e.agent.unmount("c2").unwrap();
    e.agent.unmount("c1").unwrap();

    let got = lock(&kept.0).clone();
    assert_eq!(got, event_log(&e));
    let summary: Vec<(EventKind, &str, bool)> = got
        .iter()
        .map(|ev| (ev.event, ev.container_id.as_str(), ev.shared))
        .collect();
    assert_eq!(
        summary,
        [
            (EventKind::Mount, "c1", false),
            (EventKind::Mount, "c1", false),
            (EventKind::Mount, "c2", true),
            (EventKind::Unmount, "c2", true),
            (EventKind::Unmount, "c1", false),
            (EventKind::Unmount, "c1", false),
        ]
    );
    let c1 = &got[0];
    assert_eq!(
        c1.digest.as_deref(),
        Some(plan("c1", &[1]).layers[0].digest.as_str())
    );
    assert_eq!(c1.mount_point, e.run().join("rootfs/c1"));
    assert_eq!(
        c1.upper,
        UpperEvent::Disk {
            serial: "scratch-c1".into(),
            partition: None,
            fs_type: "ext4".into()
        }
    );
    let v = c1.verity.as_ref().unwrap();
    assert_eq!(
        (
            v.algorithm.as_str(),
            v.format,
            v.data_blocks,
            v.hash_start_block
        ),
        ("sha256", 1, 10, 11)
    );
    assert_eq!((v.data_block_size, v.hash_block_size), (4096, 4096));
    assert_eq!(v.salt, "00".repeat(32));
    assert_eq!(v.on_corruption, "eio");
    let c2 = &got[2];
    assert_eq!(c2.digest.as_deref(), Some(p2.layers[0].digest.as_str()));
    assert_eq!(c2.root_hash, hex::encode(root(2)));
    assert_eq!(c2.mount_point, e.run().join("rootfs/web/c2"));
    assert_eq!(c2.upper, UpperEvent::Tmpfs { size_bytes: 4096 });
    // The device in use is the one c1 set up: EIO, whatever c2 asked for.
    assert_eq!(c2.verity.as_ref().unwrap().on_corruption, "eio");
    assert_eq!(got[3].digest, c2.digest);
    // The JSON line names the kinds in snake case.
    let line = std::fs::read_to_string(e.run().join("events.jsonl")).unwrap();
    let first = line.lines().next().unwrap();
    assert!(
        first.contains(r#""event":"mount""#) && first.contains(r#""kind":"disk""#),
        "{first}"
    );
    assert!(line.contains(r#""event":"unmount""#), "{line}");
}

/// Fails the first unmount it is given.
#[derive(Debug, Default)]
struct FailFirstUnmount(std::sync::atomic::AtomicBool);

impl Recorder for FailFirstUnmount {
    fn record(&self, events: &[LayerEvent]) -> Result<(), RecordError> {
        let unmount = events
            .iter()
            .any(|e| e.event == crate::events::EventKind::Unmount);
        if unmount && !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(RecordError::new("extending the test register", "busy"));
        }
        Ok(())
    }
}

#[test]
fn an_unmount_that_cannot_be_recorded_keeps_the_state_and_a_retry_records_it() {
    let e = env_built(
        |_| {},
        |agent| agent.with_recorder(FailFirstUnmount::default()),
    );
    e.agent.mount(&plan("c1", &[1])).unwrap();
    let err = e.agent.unmount("c1").unwrap_err();
    assert_eq!(err.step(), Step::EventLog, "{err}");
    assert_eq!(e.agent.list().len(), 1);
    assert!(e.run().join("containers/c1/state.json").exists());
    e.agent.unmount("c1").unwrap();
    e.assert_clean();
    // The log recorded the unmount both times (it comes first): at least once.
    let unmounts = event_log(&e)
        .iter()
        .filter(|ev| ev.event == crate::events::EventKind::Unmount)
        .count();
    assert_eq!(unmounts, 2);
}

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

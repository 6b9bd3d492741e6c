//! Measurement backends through the agent: the attestation-agent backend against the
//! in-test ttrpc agent (exact requests, `NOT_ENABLED` in and outside confidential mode)
//! and a failing backend (the mount is undone in confidential mode; unmounts are
//! measured too).

use std::sync::Mutex;

use layerpass_protocols::status::Kind;

use super::*;
use crate::measure::aa::{AaConnection, AaRecorder, RuntimeMeasurer};
use crate::measure::aa_client::fake::{Answer, FakeServer, TIMEOUT};
use crate::measure::aa_client::{AaError, MeasurementResult};
use crate::measure::{Backend, FailurePolicy};
use crate::policy::ReferenceValues;
use crate::sync::lock;

/// A confidential environment (layers 1 to 3 allowed) or a plain one.
fn env_measured(confidential: bool, build: impl FnOnce(Agent) -> Agent) -> Env {
    env_built(
        |c| {
            if confidential {
                let mut refs = ReferenceValues::default();
                for n in 1..=3 {
                    refs.allow(&hex::encode(root(n)));
                }
                c.reference_values = Some(refs);
                c.require_verity = true;
            }
        },
        build,
    )
}

/// A plan with a tmpfs upper (confidential mode refuses the host's scratch disk).
fn tmpfs_plan(id: &str, layers: &[u8]) -> MountPlan {
    let mut p = plan(id, layers);
    p.upper = UpperSpec::Tmpfs {
        size_bytes: 1 << 20,
    };
    p
}

fn aa_backend(server: &FakeServer) -> Backend {
    Backend::Aa {
        socket: server.socket.clone(),
        register: None,
    }
}

fn aa_recorder(server: &FakeServer, confidential: bool, allow: bool) -> AaRecorder<AaConnection> {
    AaRecorder::new(
        AaConnection::new(server.socket.clone(), TIMEOUT),
        &aa_backend(server),
        FailurePolicy::new(confidential, allow),
    )
}

/// Layer `n`'s content, written out by hand: RFC 8785 (members sorted, no whitespace).
fn content(container: &str, n: u8) -> String {
    format!(
        concat!(
            r#"{{"container_id":"{c}","corruption":"eio","data_size":40960,"#,
            r#""digest":"sha256:{d}","hash_algorithm":"sha256","root_hash":"{d}","#,
            r#""salt":"{s}"}}"#
        ),
        c = container,
        d = hex::encode([n; 32]),
        s = "00".repeat(32),
    )
}

#[test]
fn the_aa_backend_sends_one_exact_event_per_layer_on_mount_and_unmount() {
    let server = FakeServer::start(Answer::Result(0));
    let e = env_measured(true, |a| a.with_recorder(aa_recorder(&server, true, false)));
    assert_eq!(e.agent.status().measure.backend, "aa");
    e.agent.mount(&tmpfs_plan("c1", &[1, 2, 3])).unwrap();
    // Recorded before mount returned.
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for (req, n) in requests.iter().zip([1, 2, 3]) {
        assert_eq!(req.Domain, "github.com/layerpass");
        assert_eq!(req.Operation, "MountLayer");
        assert_eq!(req.Content, content("c1", n));
        assert_eq!(req.RegisterIndex, None, "the agent's own register");
    }
    for w in server.wire() {
        assert_eq!(w.service, "attestation_agent.AttestationAgentService");
        assert_eq!(w.method, "ExtendRuntimeMeasurement");
    }
    e.agent.unmount("c1").unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    let ops: Vec<&str> = requests.iter().map(|r| r.Operation.as_str()).collect();
    assert_eq!(ops[3..], ["UnmountLayer"; 3]);
    assert_eq!(requests[3].Content, content("c1", 1));
    let status = e.agent.status().measure;
    assert_eq!((status.measured, status.problem), (6, None));
    e.assert_clean();
}

#[test]
fn the_aa_backend_asks_for_the_register_given() {
    let server = FakeServer::start(Answer::Result(0));
    let backend = Backend::Aa {
        socket: server.socket.clone(),
        register: Some(17),
    };
    let rec = AaRecorder::new(
        AaConnection::new(server.socket.clone(), TIMEOUT),
        &backend,
        FailurePolicy::new(true, false),
    );
    let e = env_measured(true, |a| a.with_recorder(rec));
    e.agent.mount(&tmpfs_plan("c1", &[1])).unwrap();
    assert_eq!(server.requests()[0].RegisterIndex, Some(17));
    assert_eq!(e.agent.status().measure.register, Some(17));
}

#[test]
fn not_enabled_in_confidential_mode_refuses_the_mount_and_undoes_it() {
    for (value, name) in [(2, "NOT_ENABLED"), (1, "NOT_SUPPORTED")] {
        let server = FakeServer::start(Answer::Result(value));
        let e = env_measured(true, |a| a.with_recorder(aa_recorder(&server, true, false)));
        let err = e.agent.mount(&tmpfs_plan("c1", &[1, 2])).unwrap_err();
        let chain = err.chain().to_string();
        assert!(
            chain.contains(&format!("the attestation agent answered {name}")),
            "{chain}"
        );
        assert!(chain.contains("--allow-unmeasured"), "{chain}");
        assert_eq!(err.kind(), Kind::Internal);
        e.assert_clean();
        assert!(e.agent.list().is_empty());
        // The first refused layer stops the others.
        assert_eq!(server.requests().len(), 1);
        let status = e.agent.status().measure;
        assert_eq!(status.measured, 0);
        assert!(status.problem.unwrap().contains(name));
    }
}

#[test]
fn not_enabled_is_reported_and_accepted_with_allow_unmeasured_or_outside_confidential_mode() {
    for confidential in [true, false] {
        let server = FakeServer::start(Answer::Result(2));
        let e = env_measured(confidential, |a| {
            a.with_recorder(aa_recorder(&server, confidential, true))
        });
        e.agent.mount(&tmpfs_plan("c1", &[1, 2])).unwrap();
        assert_eq!(server.requests().len(), 2);
        let status = e.agent.status().measure;
        assert_eq!(status.measured, 0);
        let problem = status.problem.unwrap();
        assert!(
            problem.ends_with("the attestation agent answered NOT_ENABLED"),
            "{problem}"
        );
        e.agent.unmount("c1").unwrap();
    }
}

/// Fails every call (as an agent that is gone), or only unmounts; keeps the operations
/// it was asked for.
#[derive(Debug, Default)]
struct Failing {
    only_unmount: bool,
    seen: Mutex<Vec<String>>,
}

impl RuntimeMeasurer for Failing {
    fn extend(
        &self,
        _domain: &str,
        operation: &str,
        _content: &str,
        _register: Option<u64>,
    ) -> Result<MeasurementResult, AaError> {
        lock(&self.seen).push(operation.to_owned());
        if self.only_unmount && operation == "MountLayer" {
            return Ok(MeasurementResult::Ok);
        }
        Err(AaError::Timeout { timeout: TIMEOUT })
    }
}

fn failing(confidential: bool, only_unmount: bool) -> AaRecorder<Failing> {
    let backend = Backend::Aa {
        socket: "/nonexistent/aa.sock".into(),
        register: None,
    };
    let measurer = Failing {
        only_unmount,
        ..Failing::default()
    };
    AaRecorder::new(measurer, &backend, FailurePolicy::new(confidential, true))
}

#[test]
fn a_failing_backend_undoes_the_mount_in_confidential_mode_only() {
    // Confidential: refused whatever --allow-unmeasured says; everything undone.
    let e = env_measured(true, |a| a.with_recorder(failing(true, false)));
    let err = e.agent.mount(&tmpfs_plan("c1", &[1, 2])).unwrap_err();
    let chain = err.chain().to_string();
    assert!(
        chain.contains("through the attestation agent: the attestation agent did not answer"),
        "{chain}"
    );
    e.assert_clean();
    // Not confidential: the mount stands, the status says what was not measured.
    let e = env_measured(false, |a| a.with_recorder(failing(false, false)));
    e.agent.mount(&plan("c1", &[1, 2])).unwrap();
    assert_eq!(e.agent.list().len(), 1);
    let status = e.agent.status().measure;
    assert!(status.problem.unwrap().contains("did not answer"));
    assert_eq!(status.measured, 0);
}

#[test]
fn an_unmount_that_cannot_be_measured_in_confidential_mode_keeps_the_container() {
    let e = env_measured(true, |a| a.with_recorder(failing(true, true)));
    e.agent.mount(&tmpfs_plan("c1", &[1])).unwrap();
    let err = e.agent.unmount("c1").unwrap_err();
    assert!(
        err.chain().to_string().contains("did not answer"),
        "{}",
        err.chain()
    );
    // The state stays: a retry measures the unmount again.
    assert_eq!(e.agent.list().len(), 1);
    assert!(e.run().join("containers/c1/state.json").exists());
}

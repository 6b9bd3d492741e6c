//! The client against in-test agents on unix sockets in a temporary directory: a ttrpc
//! server speaking the attestation agent's protocol ([`super::fake`]), a listener that accepts and never answers, and a listener whose queue is
//! full. Every server is stopped and its threads joined when the test ends, even on a
//! failed assertion.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use layerpass_protocols::ttrpc::Code;

use super::fake::{Answer, FakeServer, TIMEOUT};
use super::*;
use crate::error::Chain;

const DOMAIN: &str = "github.com/layerpass";
/// Canonical JSON (RFC 8785: sorted keys, no insignificant whitespace).
const CONTENT: &str = concat!(
    r#"{"container":"c1","corruption":"eio","data_size":4096,"digest":"sha256:"#,
    "2222222222222222222222222222222222222222222222222222222222222222",
    r#"","hash":"sha256","root_hash":"ab12","salt":"00ff"}"#
);

#[test]
fn aa_client_sends_the_exact_request() {
    let server = FakeServer::start(Answer::Result(0));
    let client = server.client();
    let r = client.extend_runtime_measurement(DOMAIN, "MountLayer", CONTENT, Some(17));
    assert_eq!(r.unwrap(), MeasurementResult::Ok);
    let r = client.extend_runtime_measurement(DOMAIN, "UnmountLayer", "{}", None);
    assert_eq!(r.unwrap(), MeasurementResult::Ok);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].Domain, DOMAIN);
    assert_eq!(requests[0].Operation, "MountLayer");
    assert_eq!(requests[0].Content.as_bytes(), CONTENT.as_bytes());
    assert_eq!(requests[0].RegisterIndex, Some(17));
    assert_eq!(requests[1].Operation, "UnmountLayer");
    assert_eq!(requests[1].Content, "{}");
    assert_eq!(requests[1].RegisterIndex, None, "absent, not 0");

    for received in server.wire() {
        assert_eq!(
            received.service,
            "attestation_agent.AttestationAgentService"
        );
        assert_eq!(received.method, "ExtendRuntimeMeasurement");
        let nanos = i64::try_from(TIMEOUT.as_nanos()).unwrap();
        assert_eq!(
            received.timeout_nano, nanos,
            "the call carries the client's timeout"
        );
    }
}

/// The request's protobuf encoding, computed by hand: field 1 (`Domain`, tag 0x0a), 2
/// (`Operation`, 0x12) and 3 (`Content`, 0x1a) as length-delimited strings, then field 4
/// (`RegisterIndex`, 0x20) as a varint when present, even when 0 (proto3 `optional`).
#[test]
fn aa_client_request_wire_bytes() {
    let server = FakeServer::start(Answer::Result(0));
    let client = server.client();
    let content = r#"{"a":"b c"}"#;
    for index in [Some(17), None, Some(0), Some(300)] {
        let r = client.extend_runtime_measurement(DOMAIN, "MountLayer", content, index);
        assert_eq!(r.unwrap(), MeasurementResult::Ok);
    }
    let mut common = vec![0x0a, 0x14];
    common.extend_from_slice(b"github.com/layerpass");
    common.extend_from_slice(&[0x12, 0x0a]);
    common.extend_from_slice(b"MountLayer");
    common.extend_from_slice(&[0x1a, 0x0b]);
    common.extend_from_slice(b"{\"a\":\"b c\"}");
    let with = |tail: &[u8]| [common.as_slice(), tail].concat();
    let expected = [
        with(&[0x20, 0x11]),
        common.clone(),
        with(&[0x20, 0x00]),
        with(&[0x20, 0xac, 0x02]),
    ];
    let payloads: Vec<Vec<u8>> = server.wire().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, expected);
}

#[test]
fn aa_client_reports_not_enabled_and_not_supported() {
    for (value, expected) in [
        (2, MeasurementResult::NotEnabled),
        (1, MeasurementResult::NotSupported),
    ] {
        let server = FakeServer::start(Answer::Result(value));
        let r = server
            .client()
            .extend_runtime_measurement(DOMAIN, "MountLayer", CONTENT, None);
        assert_eq!(r.unwrap(), expected);
        assert_eq!(server.requests().len(), 1);
    }
    assert_eq!(MeasurementResult::NotEnabled.to_string(), "NOT_ENABLED");
}

#[test]
fn aa_client_unknown_result_is_an_error() {
    for value in [3, 7, -1] {
        let server = FakeServer::start(Answer::Result(value));
        let err = server
            .client()
            .extend_runtime_measurement(DOMAIN, "MountLayer", CONTENT, None)
            .unwrap_err();
        assert!(
            matches!(err, AaError::UnknownResult { value: v } if v == value),
            "{err:?}"
        );
    }
}

#[test]
fn aa_client_error_status_is_typed() {
    let server = FakeServer::start(Answer::Status(Code::UNAVAILABLE));
    let err = server
        .client()
        .extend_runtime_measurement(DOMAIN, "MountLayer", CONTENT, None)
        .unwrap_err();
    assert!(
        matches!(&err, AaError::Status { code: Code::UNAVAILABLE, message } if message == "event log is busy"),
        "{err:?}"
    );
}

#[test]
fn aa_client_invalid_events_are_never_sent() {
    let server = FakeServer::start(Answer::Result(0));
    let client = server.client();
    let cases = [
        ("github.com/ layerpass", "MountLayer", "{}", Field::Domain),
        (DOMAIN, "Mount\tLayer", "{}", Field::Operation),
        (DOMAIN, "", "{}", Field::Operation),
        (DOMAIN, "MountLayer", "{\"a\":1}\n", Field::Content),
    ];
    for (domain, operation, content, field) in cases {
        let err = client
            .extend_runtime_measurement(domain, operation, content, Some(17))
            .unwrap_err();
        assert!(
            matches!(err, AaError::InvalidField { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert!(server.wire().is_empty(), "the agent saw a request");
    // The connection is still usable.
    let r = client.extend_runtime_measurement(DOMAIN, "MountLayer", "{}", None);
    assert_eq!(r.unwrap(), MeasurementResult::Ok);
    assert_eq!(server.wire().len(), 1);
}

fn too_long(max: usize) -> Invalid {
    Invalid::TooLong { len: max + 1, max }
}

#[test]
fn aa_client_validation_names_field_and_reason() {
    let invalid = |d, o, c| match validate_event(d, o, c) {
        Err(AaError::InvalidField { field, reason }) => (field, reason),
        other => panic!("{other:?}"),
    };
    let ws = |offset, found| Invalid::Whitespace { offset, found };
    let np = |offset, found| Invalid::NotPrintable { offset, found };
    let lf = |offset| Invalid::LineFeed { offset };
    let (d, o, c) = (Field::Domain, Field::Operation, Field::Content);
    let long_name = "x".repeat(MAX_NAME_LEN + 1);
    let long_content = "x".repeat(MAX_CONTENT_LEN + 1);
    let cases = [
        (["a b", "o", ""], d, ws(1, ' ')),
        (["", "o", ""], d, Invalid::Empty),
        (["d\u{a0}", "o", ""], d, ws(1, '\u{a0}')),
        (["d", "o\n", ""], o, lf(1)),
        (["d", "o\u{7f}", ""], o, np(1, '\u{7f}')),
        (["d", "o", "a\nb"], c, lf(1)),
        (["d", "o", "\r"], c, np(0, '\r')),
        (["d", "o", "\t"], c, np(0, '\t')),
        (["d", "o", "é"], c, np(0, 'é')),
        (["d", "o", "\0"], c, np(0, '\0')),
        ([&long_name, "o", ""], d, too_long(MAX_NAME_LEN)),
        (["d", "o", &long_content], c, too_long(MAX_CONTENT_LEN)),
    ];
    for ([domain, operation, content], field, reason) in cases {
        let found = invalid(domain, operation, content);
        assert_eq!(
            found,
            (field, reason),
            "{domain:?} {operation:?} {content:?}"
        );
    }
    // Printable ASCII passes, spaces in the content included; an empty content is allowed.
    validate_event(DOMAIN, "MountLayer", CONTENT).unwrap();
    validate_event("d", "o", r#"{"image":"alpine", "digest":"sha256:0c"}"#).unwrap();
    validate_event("d", "o", "").unwrap();
    validate_event(&"x".repeat(MAX_NAME_LEN), "o", &"~".repeat(MAX_CONTENT_LEN)).unwrap();

    let err = validate_event("a b", "o", "").unwrap_err();
    assert_eq!(
        Chain(&err).to_string(),
        "invalid runtime measurement domain: it holds whitespace ' ' at byte 1"
    );
}

/// Accepts one connection and holds it without ever answering. Dropping it ends and joins
/// the thread (connecting once itself if the client never did).
struct SilentAgent {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SilentAgent {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                // Returns when the sender is dropped.
                let _ = stopped.recv();
                drop(stream);
            }
        });
        Self {
            _dir: dir,
            socket,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for SilentAgent {
    fn drop(&mut self) {
        drop(self.stop.take());
        // Unblocks `accept` if nobody connected; harmless otherwise.
        let _ = UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn aa_client_silent_agent_times_out() {
    let agent = SilentAgent::start();
    let timeout = Duration::from_millis(200);
    let client = AaClient::connect(&agent.socket, timeout).unwrap();
    let started = Instant::now();
    let err = client
        .extend_runtime_measurement(DOMAIN, "MountLayer", CONTENT, None)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, AaError::Timeout { timeout: t } if t == timeout),
        "{err:?}"
    );
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    drop(client);
}

#[test]
fn aa_client_missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attestation-agent.sock");
    let err = AaClient::connect(&socket, TIMEOUT).unwrap_err();
    assert!(
        matches!(&err, AaError::SocketMissing { path } if *path == socket),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("no attestation agent socket at {}", socket.display())
    );
}

#[test]
fn aa_client_stale_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attestation-agent.sock");
    drop(UnixListener::bind(&socket).unwrap());
    let err = AaClient::connect(&socket, TIMEOUT).unwrap_err();
    match &err {
        AaError::Connect { path, source } => {
            assert_eq!(*path, socket);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn aa_client_full_listen_queue_times_out_connect() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attestation-agent.sock");
    let addr = SocketAddrUnix::new(&socket).unwrap();
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&listener, &addr).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    // Fill the queue: nobody accepts.
    let mut queued = Vec::new();
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => queued.push(fd),
            Err(Errno::AGAIN) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(queued.len() < 64, "the listen queue never filled");
    }
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    let err = AaClient::connect(&socket, timeout).unwrap_err();
    assert!(
        matches!(err, AaError::ConnectTimeout { timeout: t, .. } if t == timeout),
        "{err:?}"
    );
    assert!(started.elapsed() >= timeout);
}

#[test]
fn aa_client_zero_timeout_is_rejected() {
    let server = FakeServer::start(Answer::Result(0));
    let err = AaClient::connect(&server.socket, Duration::ZERO).unwrap_err();
    assert!(matches!(err, AaError::ZeroTimeout), "{err:?}");
}

#[test]
fn aa_client_default_socket_and_sharing() {
    assert_eq!(
        DEFAULT_SOCKET,
        "/run/confidential-containers/attestation-agent/attestation-agent.sock"
    );
    fn shareable<T: Send + Sync>() {}
    shareable::<AaClient>();
    let server = FakeServer::start(Answer::Result(0));
    let client = Arc::new(server.client());
    assert_eq!(client.path(), server.socket);
    assert_eq!(client.timeout(), TIMEOUT);
    assert!(server.dir.path().exists());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || {
                client.extend_runtime_measurement(
                    DOMAIN,
                    "MountLayer",
                    &format!("{{\"i\":{i}}}"),
                    None,
                )
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), MeasurementResult::Ok);
    }
    assert_eq!(server.requests().len(), 4);
}

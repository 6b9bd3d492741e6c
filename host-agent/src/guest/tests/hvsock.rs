//! The hybrid vsock handshake's failures, and that it consumes nothing past its line.

use std::time::Instant;

use super::*;
use crate::guest::{GuestEndpoint, GuestError, MAX_REPLY};

fn endpoint(dir: &Path, muxer: Muxer) -> GuestEndpoint {
    let socket = dir.join("hvsock");
    hybrid_vsock(&socket, 1024, muxer);
    GuestEndpoint::HybridVsock { socket, port: 1024 }
}

fn refused(muxer: Muxer) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = endpoint(dir.path(), muxer);
    let err = endpoint.connect(TIMEOUT).unwrap_err();
    let message = err.to_string();
    match err {
        GuestError::Handshake { endpoint: e, reply } => {
            assert_eq!(e, endpoint.to_string());
            (reply, message)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_reply_is_a_handshake_error_naming_it() {
    let (reply, message) = refused(Muxer::Reply(b"NO\n".to_vec()));
    assert_eq!(reply, "NO");
    assert!(
        message.contains("reply \"NO\"") && message.contains("hvsock:"),
        "{message}"
    );
    assert_eq!(refused(Muxer::Reply(b"OK\n".to_vec())).0, "OK");
    assert_eq!(refused(Muxer::Reply(b"OK x\n".to_vec())).0, "OK x");
}

#[test]
fn a_peer_that_closes_is_refused_with_what_it_sent() {
    // Firecracker closes the connection when nothing listens on the guest port.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hvsock");
    let listener = UnixListener::bind(&socket).unwrap();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 13];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(b"OK 12").unwrap();
    });
    let err = GuestEndpoint::HybridVsock { socket, port: 1024 }
        .connect(TIMEOUT)
        .unwrap_err();
    assert!(
        matches!(&err, GuestError::Handshake { reply, .. } if reply == "OK 12"),
        "{err:?}"
    );
}

#[test]
fn the_reply_is_read_up_to_64_bytes() {
    let (reply, _) = refused(Muxer::Reply(vec![b'x'; 200]));
    assert_eq!(reply.len(), MAX_REPLY);
}

#[test]
fn bytes_after_the_reply_line_are_left_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = endpoint(dir.path(), Muxer::Reply(b"OK 7\nEXTRA".to_vec()));
    let mut stream = UnixStream::from(endpoint.connect(TIMEOUT).unwrap());
    let mut extra = [0u8; 5];
    stream.read_exact(&mut extra).unwrap();
    assert_eq!(&extra, b"EXTRA");
}

#[test]
fn a_silent_peer_times_out_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = endpoint(dir.path(), Muxer::Reply(Vec::new()));
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = endpoint.connect(timeout).unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(
            err,
            GuestError::Timeout {
                step: "hybrid vsock handshake",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
}

#[test]
fn a_missing_socket_is_unreachable_naming_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent");
    let endpoint = GuestEndpoint::HybridVsock { socket, port: 1024 };
    let err = endpoint.connect(TIMEOUT).unwrap_err();
    let GuestError::Unreachable {
        endpoint: e,
        source,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(e, &format!("hvsock:{}/absent:1024", dir.path().display()));
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
}

//! vsock without a transport, and the connect timeout.

use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

use super::*;
use crate::guest::{GuestConnection, GuestEndpoint, GuestError};

#[test]
fn vsock_without_a_transport_is_unreachable() {
    // This host has no vhost-vsock: the kernel says ENODEV (or the socket family does
    // not exist at all). Either way: an error naming the endpoint, quickly.
    let endpoint: GuestEndpoint = "vsock:3:1027".parse().unwrap();
    let start = Instant::now();
    let err = endpoint.connect(Duration::from_secs(2)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    let GuestError::Unreachable { endpoint: e, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(e, "vsock:3:1027");
    assert!(err.to_string().contains("vsock:3:1027"), "{err}");
    let err = GuestConnection::connect(&endpoint, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, GuestError::Unreachable { .. }), "{err:?}");
}

/// A unix listener with a backlog of 0 that never accepts.
fn full_listener(path: &Path) -> OwnedFd {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
    rustix::net::listen(&fd, 0).unwrap();
    fd
}

#[test]
fn a_listener_that_never_accepts_times_the_connect_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("full.sock");
    let _listener = full_listener(&socket);
    let endpoint = GuestEndpoint::Unix { socket };
    let timeout = Duration::from_millis(200);
    // The first connections fill the backlog; then connecting waits and times out.
    let mut held = Vec::new();
    let err = loop {
        match endpoint.connect(timeout) {
            Ok(fd) => held.push(fd),
            Err(e) => break e,
        }
        assert!(held.len() < 16, "the backlog never filled");
    };
    assert!(
        matches!(
            err,
            GuestError::Timeout {
                step: "connect",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"").unwrap();
    let err = GuestEndpoint::Serial { socket: path }
        .connect(TIMEOUT)
        .unwrap_err();
    let GuestError::Unreachable { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(source.raw_os_error(), Some(libc::ECONNREFUSED));
}

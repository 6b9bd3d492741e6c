//! Real calls on every unix-socket transport.

use layerpass_protocols::status::{HasKind, Kind};

use super::*;
use crate::guest::{GuestConnection, GuestEndpoint, GuestError};

/// Status, Mount, List, Unmount and two failing mounts through `endpoint`.
fn round_trip(endpoint: &GuestEndpoint) {
    let conn = GuestConnection::connect(endpoint, TIMEOUT).unwrap();
    assert_eq!(conn.endpoint(), endpoint);
    let status = conn.status().unwrap();
    assert_eq!((status.containers, status.layers), (0, 0));

    let resp = conn.mount(&mount_request("c1", "lp-top")).unwrap();
    assert_eq!(resp.container_id, "c1");
    assert_eq!(resp.layers.len(), 1);
    assert_eq!(resp.layers[0].digest, LAYER);
    assert_eq!(conn.status().unwrap().containers, 1);
    assert_eq!(conn.list().unwrap()[0].container_id, "c1");

    // The agent's error kinds and messages arrive as they were sent.
    let err = conn.mount(&mount_request("c1", "lp-top")).unwrap_err();
    let GuestError::Call { kind, message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*kind, Kind::AlreadyExists, "{message}");
    assert!(err.to_string().contains(&endpoint.to_string()), "{err}");
    let mut missing = mount_request("c2", "lp-absent");
    missing.layers[0].digest = format!("sha256:{}", "2".repeat(64));
    let err = conn.mount(&missing).unwrap_err();
    assert_eq!(err.kind(), Kind::NotFound, "{err}");
    assert!(err.to_string().contains("lp-absent"), "{err}");

    conn.unmount("c1").unwrap();
    conn.unmount("c1").unwrap();
    assert_eq!(conn.status().unwrap().containers, 0);
}

#[test]
fn unix_round_trip() {
    let agent = GuestAgentFixture::start();
    round_trip(&GuestEndpoint::Unix {
        socket: agent.socket.clone(),
    });
}

#[test]
fn serial_round_trip_through_a_qemu_chardev_and_the_guest_bridge() {
    let agent = GuestAgentFixture::start();
    let chardev = agent.path("serial.sock");
    qemu_serial_chardev(&chardev, &agent.socket);
    round_trip(&GuestEndpoint::Serial { socket: chardev });
}

#[test]
fn hybrid_vsock_round_trip_after_the_handshake() {
    let agent = GuestAgentFixture::start();
    let socket = agent.path("hvsock");
    hybrid_vsock(&socket, 1027, Muxer::Forward(agent.socket.clone()));
    round_trip(&GuestEndpoint::HybridVsock { socket, port: 1027 });
}

#[test]
fn a_stopped_agent_makes_calls_unavailable() {
    let mut agent = GuestAgentFixture::start();
    let endpoint = GuestEndpoint::Unix {
        socket: agent.socket.clone(),
    };
    let conn = GuestConnection::connect(&endpoint, TIMEOUT)
        .unwrap()
        .with_call_timeout(Duration::from_secs(2));
    conn.status().unwrap();
    agent.stop();
    let err = conn.status().unwrap_err();
    assert!(
        matches!(
            err,
            GuestError::Call {
                kind: Kind::Unavailable,
                ..
            }
        ),
        "{err:?}"
    );
    // And a new connection finds nobody.
    let err = GuestConnection::connect(&endpoint, TIMEOUT).unwrap_err();
    assert!(matches!(err, GuestError::Unreachable { .. }), "{err:?}");
}

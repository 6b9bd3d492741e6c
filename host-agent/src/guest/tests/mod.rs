//! The client against real sockets: an in-process guest agent (on the guest crate's
//! recording fake kernel) behind each transport, a fake hybrid vsock muxer and a fake
//! QEMU virtio-serial chardev.

mod calls;
mod connect;
mod hvsock;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use layerpass_guest::kernel::fake::FakeKernel;
use layerpass_guest::server::serial::SerialBridge;
use layerpass_guest::server::{self, RunningServer, Transport, convert};
use layerpass_guest::{Agent, AgentConfig, DiskRef, FsType, LayerSpec, MountPlan, UpperSpec};
use layerpass_protocols::v1::guest as pb;

pub(super) const LAYER: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// A guest agent serving on a unix socket in a temporary directory.
pub(super) struct GuestAgentFixture {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    server: Option<RunningServer>,
}

impl GuestAgentFixture {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let mut config = AgentConfig::with_run_dir(run_dir.clone());
        config.device_timeout = Duration::from_millis(50);
        let kernel = Arc::new(FakeKernel::new());
        kernel.add_disk(DiskRef::Serial("lp-top".into()), 1 << 16);
        let agent = Arc::new(Agent::with_kernel(config, kernel).unwrap());
        let socket = dir.path().join("agent.sock");
        let server = server::start(agent, &Transport::unix(&socket).unwrap(), &run_dir).unwrap();
        Self {
            dir,
            socket,
            server: Some(server),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

impl Drop for GuestAgentFixture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A mount request for one unverified layer on disk `serial`.
pub(super) fn mount_request(container_id: &str, serial: &str) -> pb::MountRequest {
    convert::mount_request(&MountPlan {
        container_id: container_id.into(),
        layers: vec![LayerSpec {
            digest: LAYER.into(),
            disk: DiskRef::Serial(serial.into()),
            fs_type: FsType::Erofs,
            verity: None,
        }],
        upper: UpperSpec::Tmpfs {
            size_bytes: 1 << 20,
        },
        mount_point: None,
        overlay: layerpass_guest::OverlayOptions::default(),
    })
}

/// Copies bytes both ways between `a` and `b` until either side closes.
pub(super) fn splice(a: UnixStream, b: UnixStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let copy = |mut from: UnixStream, mut to: UnixStream| {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    copy(a, b2);
    copy(b, a2);
}

/// What the fake hybrid vsock muxer does after reading `CONNECT <port>\n`.
#[derive(Debug, Clone)]
pub(super) enum Muxer {
    /// Answers `OK 1073741824\n` and splices the connection to this agent socket.
    Forward(PathBuf),
    /// Writes these bytes, then holds the connection until the client closes it.
    Reply(Vec<u8>),
}

/// A hybrid vsock device's socket at `path` (Cloud Hypervisor / Firecracker): each
/// connection must start with `CONNECT <port>\n`.
pub(super) fn hybrid_vsock(path: &Path, port: u32, muxer: Muxer) {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let muxer = muxer.clone();
            thread::spawn(move || {
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while conn.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
                    line.push(byte[0]);
                }
                assert_eq!(line, format!("CONNECT {port}").into_bytes());
                match muxer {
                    Muxer::Forward(agent) => {
                        conn.write_all(b"OK 1073741824\n").unwrap();
                        splice(conn, UnixStream::connect(agent).unwrap());
                    }
                    Muxer::Reply(bytes) => {
                        conn.write_all(&bytes).unwrap();
                        // Until the client closes.
                        let _ = io::copy(&mut conn, &mut io::sink());
                    }
                }
            });
        }
    });
}

/// A QEMU virtio-serial chardev listening at `path` (QEMU is the server), whose port
/// the guest agent's own virtio-serial bridge serves.
pub(super) fn qemu_serial_chardev(path: &Path, agent_socket: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    // The virtio-serial port: QEMU's end and the guest's character device.
    let (qemu_end, guest_port) = UnixStream::pair().unwrap();
    let agent_socket = agent_socket.to_owned();
    thread::spawn(move || {
        let mut bridge = SerialBridge::new(guest_port, Path::new("/dev/vport0p1"), &agent_socket);
        let _ = bridge.run();
    });
    thread::spawn(move || {
        // One host at a time, as QEMU's socket chardev.
        if let Some(Ok(host)) = listener.incoming().next() {
            splice(host, qemu_end);
        }
    });
}

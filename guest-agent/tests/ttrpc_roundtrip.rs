//! The GuestAgent service over a real ttrpc unix socket, against an agent on the recording
//! fake kernel: Mount / List / Status / Unmount round trips, and each error kind the agent
//! produces arrives as its own ttrpc code with the agent's message.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use layerpass_guest::error::Chain;
use layerpass_guest::kernel::MountSpec;
use layerpass_guest::kernel::fake::{Call, FakeKernel};
use layerpass_guest::server::{self, RunningServer, Transport, convert};
use layerpass_guest::{
    Agent, AgentConfig, CorruptionMode, DiskRef, FsType, HashAlgorithm, LayerSpec, MountPlan,
    OverlayOptions, UpperSpec, VerityParams,
};
use layerpass_protocols::ttrpc::{self, Code};
use layerpass_protocols::v1::guest as pb;
use layerpass_protocols::v1::guest_ttrpc::GuestAgentClient;
use rustix::io::Errno;

const TOP: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const BASE: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Fixture {
    _dir: tempfile::TempDir,
    run_dir: std::path::PathBuf,
    kernel: Arc<FakeKernel>,
    server: Option<RunningServer>,
    client: GuestAgentClient,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

fn fixture(require_verity: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut config = AgentConfig::with_run_dir(run_dir.clone());
    config.require_verity = require_verity;
    config.device_timeout = Duration::from_millis(50);
    let kernel = Arc::new(FakeKernel::new());
    kernel.add_disk(DiskRef::Serial("lp-top".into()), 1 << 16);
    kernel.add_disk(
        DiskRef::Partition {
            serial: "lp-image".into(),
            name: "lp-base".into(),
        },
        1 << 16,
    );
    let agent = Arc::new(Agent::with_kernel(config, kernel.clone()).unwrap());
    let socket = dir.path().join("agent.sock");
    let transport = Transport::unix(&socket).unwrap();
    let server = server::start(agent, &transport, &run_dir).unwrap();
    let client = ttrpc::Client::connect(&format!("unix://{}", socket.display())).unwrap();
    Fixture {
        _dir: dir,
        run_dir,
        kernel,
        server: Some(server),
        client: GuestAgentClient::new(client),
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(Duration::from_secs(30))
}

fn plan(id: &str) -> MountPlan {
    MountPlan {
        container_id: id.into(),
        layers: vec![
            LayerSpec {
                digest: TOP.into(),
                disk: DiskRef::Serial("lp-top".into()),
                fs_type: FsType::Erofs,
                verity: Some(VerityParams {
                    algorithm: HashAlgorithm::Sha256,
                    format: 1,
                    data_block_size: 4096,
                    hash_block_size: 4096,
                    data_blocks: 16,
                    hash_start_block: 17,
                    salt: vec![0; 32],
                    root_hash: vec![0xab; 32],
                    on_corruption: CorruptionMode::Eio,
                }),
            },
            LayerSpec {
                digest: BASE.into(),
                disk: DiskRef::Partition {
                    serial: "lp-image".into(),
                    name: "lp-base".into(),
                },
                fs_type: FsType::Erofs,
                verity: None,
            },
        ],
        upper: UpperSpec::Tmpfs {
            size_bytes: 64 << 20,
        },
        mount_point: None,
        overlay: OverlayOptions::default(),
    }
}

fn mount(f: &Fixture, plan: &MountPlan) -> ttrpc::Result<pb::MountResponse> {
    f.client.mount(ctx(), &convert::mount_request(plan))
}

/// The code and message of a failed call.
fn status(result: ttrpc::Result<impl std::fmt::Debug>) -> (Code, String) {
    match result {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message().to_owned()),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

#[test]
fn mount_list_status_unmount() {
    let f = fixture(false);
    let resp = mount(&f, &plan("c1")).unwrap();
    assert_eq!(resp.container_id, "c1");
    let rootfs = f.run_dir.join("rootfs/c1");
    assert_eq!(Path::new(&resp.rootfs), rootfs);
    assert_eq!(resp.layers.len(), 2);
    assert_eq!(resp.layers[0].digest, TOP);
    assert_eq!(resp.layers[0].root_hash, "ab".repeat(32));
    assert!(
        resp.layers[0].device.starts_with("/dev/mapper/"),
        "{:?}",
        resp.layers[0]
    );
    assert_eq!(resp.layers[1].digest, BASE);
    assert_eq!(resp.layers[1].root_hash, "");
    assert!(!resp.layers[0].shared && !resp.layers[1].shared);
    assert!(f.kernel.mounts().contains_key(&rootfs));

    // A second container with the same layers shares them.
    let resp2 = mount(&f, &plan("c2")).unwrap();
    assert!(resp2.layers.iter().all(|l| l.shared), "{resp2:?}");

    let list = f.client.list(ctx(), &pb::ListRequest::new()).unwrap();
    let ids: Vec<_> = list
        .containers
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    assert_eq!(ids, ["c1", "c2"]);
    assert_eq!(list.containers[0].rootfs, resp.rootfs);
    assert_eq!(list.containers[0].layers, resp.layers);

    let st = f.client.status(ctx(), &pb::StatusRequest::new()).unwrap();
    assert_eq!((st.containers, st.layers), (2, 2));
    assert!(!st.confidential && !st.require_verity);

    for id in ["c1", "c2", "c2"] {
        let mut req = pb::UnmountRequest::new();
        req.container_id = id.into();
        f.client.unmount(ctx(), &req).unwrap();
    }
    assert!(
        f.client
            .list(ctx(), &pb::ListRequest::new())
            .unwrap()
            .containers
            .is_empty()
    );
    assert!(f.kernel.mounts().is_empty(), "{:?}", f.kernel.mounts());
    assert!(f.kernel.dm_devices().is_empty());
    let st = f.client.status(ctx(), &pb::StatusRequest::new()).unwrap();
    assert_eq!((st.containers, st.layers), (0, 0));
}

#[test]
fn bad_requests_are_invalid_argument_naming_the_field() {
    let f = fixture(false);
    let mut req = convert::mount_request(&plan("c1"));
    req.layers[1].disk = Default::default();
    let (code, message) = status(f.client.mount(ctx(), &req));
    assert_eq!(code, Code::INVALID_ARGUMENT);
    assert!(message.contains("layers[1].disk: missing"), "{message}");
    assert!(message.contains(BASE), "{message}");

    let mut bad = plan("c1");
    bad.layers[0].digest = "sha256:short".into();
    let (code, message) = status(mount(&f, &bad));
    assert_eq!(code, Code::INVALID_ARGUMENT);
    assert!(message.contains("sha256:short"), "{message}");
    assert!(f.kernel.calls().is_empty(), "{:?}", f.kernel.labels());
}

#[test]
fn each_error_kind_arrives_as_its_code() {
    let f = fixture(false);

    // NotFound: a disk that never appears.
    let mut missing = plan("c1");
    missing.layers[1].disk = DiskRef::Serial("lp-absent".into());
    let (code, message) = status(mount(&f, &missing));
    assert_eq!(code, Code::NOT_FOUND, "{message}");
    assert!(message.contains("lp-absent"), "{message}");
    assert!(f.kernel.mounts().is_empty() && f.kernel.dm_devices().is_empty());

    // AlreadyExists: the same container twice.
    mount(&f, &plan("c1")).unwrap();
    let (code, message) = status(mount(&f, &plan("c1")));
    assert_eq!(code, Code::ALREADY_EXISTS, "{message}");
    assert!(message.contains("c1"), "{message}");

    // FailedPrecondition and Internal: kernel calls failing with EBUSY and EIO.
    for (errno, want) in [
        (Errno::BUSY, Code::FAILED_PRECONDITION),
        (Errno::IO, Code::INTERNAL),
    ] {
        let errno = errno.raw_os_error();
        f.kernel.clear_failures();
        f.kernel
            .fail_when(move |c| matches!(c, Call::DmCreate(_)).then_some(errno));
        let mut other = plan("c9");
        other.layers[0].verity.as_mut().unwrap().root_hash = vec![0xcd; 32];
        let (code, message) = status(mount(&f, &other));
        assert_eq!(code, want, "errno {errno}: {message}");
        // The OS error is in the message, once (the agent's error chain).
        let os = std::io::Error::from_raw_os_error(errno).to_string();
        assert_eq!(message.matches(&os).count(), 1, "{message}");
        assert!(message.contains("layer 0"), "{message}");
        assert!(message.contains(TOP), "{message}");
    }
    f.kernel.clear_failures();

    // PermissionDenied: a layer without verity under --require-verity.
    let strict = fixture(true);
    let (code, message) = status(mount(&strict, &plan("c1")));
    assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
    assert!(message.contains(BASE), "{message}");
    assert!(strict.kernel.dm_devices().is_empty());
    let st = strict
        .client
        .status(ctx(), &pb::StatusRequest::new())
        .unwrap();
    assert!(st.require_verity);
}

#[test]
fn requests_on_one_connection_run_concurrently() {
    let f = fixture(false);
    let client = f.client.clone();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                let plan = plan(&format!("par-{i}"));
                client.mount(ctx(), &convert::mount_request(&plan)).unwrap()
            })
        })
        .collect();
    for h in handles {
        let resp = h.join().unwrap();
        assert!(resp.container_id.starts_with("par-"));
    }
    let st = f.client.status(ctx(), &pb::StatusRequest::new()).unwrap();
    assert_eq!((st.containers, st.layers), (8, 2));
}

/// A Mount blocked inside the kernel does not hold up List, Status or another container's
/// Mount (no global lock in the server or the agent). The fake kernel's own lock is held
/// while the call is blocked, so the other Mount is one that fails validation before any
/// kernel call.
#[test]
fn a_blocked_mount_does_not_block_other_requests() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, mpsc};

    let f = fixture(false);
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let blocked_once = AtomicBool::new(false);
    // The first dm_create of container "slow" blocks until released.
    f.kernel.fail_when(move |c| {
        if matches!(c, Call::DmCreate(_)) && !blocked_once.swap(true, Ordering::SeqCst) {
            let _ = entered_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }
        None
    });
    let client = f.client.clone();
    let slow =
        std::thread::spawn(move || client.mount(ctx(), &convert::mount_request(&plan("slow"))));
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();

    let quick = ttrpc::context::with_duration(Duration::from_secs(5));
    assert!(
        f.client
            .list(quick, &pb::ListRequest::new())
            .unwrap()
            .containers
            .is_empty()
    );
    let quick = ttrpc::context::with_duration(Duration::from_secs(5));
    let st = f.client.status(quick, &pb::StatusRequest::new()).unwrap();
    assert_eq!((st.containers, st.layers), (0, 0));
    // Another container's invalid plan is answered too.
    let mut bad = plan("other");
    bad.layers.clear();
    let quick = ttrpc::context::with_duration(Duration::from_secs(5));
    let (code, _) = status(f.client.mount(quick, &convert::mount_request(&bad)));
    assert_eq!(code, Code::INVALID_ARGUMENT);

    release_tx.send(()).unwrap();
    let resp = slow.join().unwrap().unwrap();
    assert_eq!(resp.container_id, "slow");
}

/// vsock needs no vhost-vsock to bind: a port in use is an error naming it. (Without
/// AF_VSOCK support at all, the error still names the port.)
#[test]
fn vsock_listener_errors_name_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(
        Agent::with_kernel(
            AgentConfig::with_run_dir(dir.path().join("run")),
            Arc::new(FakeKernel::new()),
        )
        .unwrap(),
    );
    let port = 40_000 + std::process::id() % 20_000;
    let transport = Transport::vsock(port).unwrap();
    match server::start(agent.clone(), &transport, dir.path()) {
        Ok(first) => {
            let err = server::start(agent, &transport, dir.path()).unwrap_err();
            let err = Chain(&err).to_string();
            first.shutdown();
            assert!(err.contains(&format!("vsock port {port}")), "{err}");
            assert!(err.to_lowercase().contains("in use"), "{err}");
        }
        Err(e) => {
            let err = Chain(&e).to_string();
            assert!(
                err.contains(&format!("cannot listen on vsock port {port}")),
                "{err}"
            );
        }
    }
}

/// An encrypted-disk upper travels through the protocol: a request without its disk is
/// `INVALID_ARGUMENT` naming the field; a whole one reaches the agent's upper step (which
/// refuses with `FAILED_PRECONDITION` until the encrypted set-up is built) and leaves
/// nothing behind.
#[test]
fn an_encrypted_disk_upper_over_ttrpc() {
    let f = fixture(false);
    let mut req = convert::mount_request(&plan("c1"));
    req.upper
        .mut_or_insert_default()
        .set_encrypted_disk(pb::EncryptedDiskUpper::new());
    let (code, message) = status(f.client.mount(ctx(), &req));
    assert_eq!(code, Code::INVALID_ARGUMENT);
    assert!(
        message.contains("upper.encrypted_disk.disk: missing"),
        "{message}"
    );
    assert!(f.kernel.calls().is_empty(), "{:?}", f.kernel.labels());

    let mut encrypted = plan("c1");
    encrypted.upper = UpperSpec::EncryptedDisk {
        disk: DiskRef::Serial("lp-scratch".into()),
    };
    let req = convert::mount_request(&encrypted);
    assert!(req.upper.has_encrypted_disk());
    assert_eq!(convert::mount_plan(&req).unwrap(), encrypted);
    // The scratch disk appears; the upper is set up on it and torn down at unmount.
    f.kernel
        .add_disk(DiskRef::Serial("lp-scratch".into()), 1 << 16);
    mount(&f, &encrypted).unwrap();
    let crypt = f
        .kernel
        .mounts()
        .into_iter()
        .find_map(|(at, spec)| match spec {
            MountSpec::Disk { source, .. } if at.ends_with("upper") => Some(source),
            _ => None,
        })
        .unwrap();
    assert!(
        crypt.to_string_lossy().starts_with("/dev/mapper/lp-up-")
            && crypt.to_string_lossy().ends_with("-crypt"),
        "{}",
        crypt.display()
    );
    let mut req = pb::UnmountRequest::new();
    req.container_id = "c1".into();
    f.client.unmount(ctx(), &req).unwrap();
    assert!(f.kernel.mounts().is_empty(), "{:?}", f.kernel.mounts());
    assert!(f.kernel.dm_devices().is_empty());
}

//! The daemon through its API over a real unix socket (in-process daemon, `HostClient`):
//! containerd mount lists (per-layer and block mode, composite), an OCI image converted into
//! the cache, the Kata store resolved as Kata's Go runtime resolves it, delivery to a guest
//! agent, every bad input as its code with nothing left behind, and restart (the binary,
//! `kill -9`, orphans swept, a second daemon refused).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod image_support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_support::{LAYER_TAR, LayerSpec, OciDir, layer_tar};
use layerpass::api::{ApiServer, HostClient};
use layerpass::daemon::Daemon;
use layerpass::daemon::config::{Config, ExportMode, UpperKind, VerityMode};
use layerpass::erofs::{ConvertOptions, convert_layer};
use layerpass::verity::sidecar_path;
use layerpass_protocols::protobuf::{EnumOrUnknown, MessageField};
use layerpass_protocols::status::Kind;
use layerpass_protocols::ttrpc::{self, TtrpcContext};
use layerpass_protocols::v1::guest as gpb;
use layerpass_protocols::v1::guest_ttrpc;
use layerpass_protocols::v1::host as pb;
use layerpass_test_support::kata::{rdev, resolve_like_kata};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A containerd-shaped snapshotter root and a daemon configuration, all under one tempdir.
struct Fixture {
    dir: tempfile::TempDir,
    config: Config,
}

impl Fixture {
    fn new(kata: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = Config {
            state_dir: d.join("state"),
            cache_dir: d.join("state"),
            run_dir: d.join("run"),
            api_socket: d.join("run/api.sock"),
            kata_vhost_user_store: kata.then(|| d.join("kata")),
            scratch_size: 32 << 20,
            queues: 1,
            workers: 2,
            ..Config::default()
        };
        Self { dir, config }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("snapshotter")
    }

    fn blob(&self, id: u32) -> PathBuf {
        self.root().join(format!("snapshots/{id}/layer.erofs"))
    }

    /// Snapshot `id`'s layer, made by our converter (containerd's verity layout + sidecar),
    /// holding `layer<id>.txt` and a shared `app/who` the top layer wins.
    fn layer(&self, id: u32) -> PathBuf {
        let blob = self.blob(id);
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        let tar = layer_tar(&[
            (
                &format!("layer{id}.txt"),
                format!("layer {id}\n").as_bytes(),
            ),
            ("app/who", format!("{id}").as_bytes()),
        ]);
        convert_layer(&tar[..], &blob, &ConvertOptions::default()).unwrap();
        assert!(sidecar_path(&blob).exists());
        blob
    }

    fn erofs(&self, id: u32) -> Value {
        let b = self.blob(id);
        json!({"type": "erofs", "source": b, "options": ["ro", "loop", format!("X-containerd.dmverity={}.dmverity", b.display())]})
    }

    /// Non-block mode: the layers and an overlay over host directories.
    fn overlay_mounts(&self, container: u32, layers: &[u32]) -> Vec<Value> {
        let dir = self.root().join(format!("snapshots/{container}"));
        let mut v: Vec<Value> = layers.iter().map(|&i| self.erofs(i)).collect();
        v.push(
            json!({"type": "format/mkdir/overlay", "source": "overlay", "options": [
                format!("workdir={}/work", dir.display()),
                format!("upperdir={}/fs", dir.display()),
                format!("lowerdir={{{{ overlay 0 {} }}}}", layers.len() - 1),
            ]}),
        );
        v
    }

    /// Block mode before activation (reference §5.4).
    fn block_mounts(&self, container: u32, layers: &[u32], size: u64) -> Vec<Value> {
        let rw = self
            .root()
            .join(format!("snapshots/{container}/rwlayer.img"));
        let mut v = vec![json!({"type": "mkfs/ext4", "source": rw, "options": [
            "X-containerd.mkfs.fs=ext4", format!("X-containerd.mkfs.size={size}"), "rw", "loop"]})];
        v.extend(layers.iter().map(|&i| self.erofs(i)));
        v.push(
            json!({"type": "format/mkdir/overlay", "source": "overlay", "options": [
                "X-containerd.mkdir.path={{ mount 0 }}/upper:0755",
                "X-containerd.mkdir.path={{ mount 0 }}/work:0755",
                "workdir={{ mount 0 }}/work",
                "upperdir={{ mount 0 }}/upper",
                format!("lowerdir={{{{ overlay 1 {} }}}}", layers.len()),
            ]}),
        );
        v
    }

    /// Every file the daemon can leave: sockets, Kata entries, scratch images, trees.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in [
            self.config.run_dir.join("sockets"),
            self.dir.path().join("kata/block/sockets"),
            self.dir.path().join("kata/block/devices"),
            self.config.state_dir.join("scratch"),
            self.config.state_dir.join("trees"),
            self.config.state_dir.join("layers"),
        ] {
            if let Ok(rd) = fs::read_dir(&dir) {
                out.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        out
    }
}

struct Running {
    daemon: Arc<Daemon>,
    server: Option<ApiServer>,
    client: HostClient,
}

impl Running {
    fn start(config: &Config) -> Self {
        let daemon = Arc::new(Daemon::start(config.clone()).unwrap());
        let server = ApiServer::start(daemon.clone(), &config.api_socket).unwrap();
        let client = HostClient::connect(&config.api_socket, TIMEOUT).unwrap();
        Self {
            daemon,
            server: Some(server),
            client,
        }
    }

    /// Stops the API and the daemon and waits until the ttrpc server has let go of it, so
    /// that the state lock is free for the next daemon.
    fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        self.daemon.shutdown();
        let start = Instant::now();
        while Arc::strong_count(&self.daemon) > 1 {
            assert!(start.elapsed() < TIMEOUT, "the API server kept the daemon");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        self.daemon.shutdown();
    }
}

fn mounts_req(sandbox: &str, container: &str, mounts: &[Value]) -> pb::ExportRequest {
    let mut req = pb::ExportRequest::new();
    req.sandbox_id = sandbox.into();
    req.container_id = container.into();
    let mut m = pb::ContainerdMounts::new();
    for v in mounts {
        let mut c = pb::ContainerdMount::new();
        c.type_ = v["type"].as_str().unwrap().into();
        c.source = v["source"].as_str().unwrap().into();
        c.options = v["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        m.mounts.push(c);
    }
    req.set_mounts(m);
    req
}

fn err_of(r: Result<pb::ExportResponse, layerpass::api::ApiError>) -> (Kind, String) {
    match r {
        Ok(resp) => panic!("expected an error, got {resp:?}"),
        Err(layerpass::api::ApiError::Call { kind, message }) => (kind, message),
        Err(e) => panic!("not a call error: {e}"),
    }
}

/// Kata's lookup ([`layerpass_test_support::kata::resolve_like_kata`]) of `major:minor`.
fn kata_resolve(store: &Path, major: u32, minor: u32) -> Option<PathBuf> {
    resolve_like_kata(store, rdev(major, minor))
}

fn root_hash_of(blob: &Path) -> String {
    let side: Value = serde_json::from_slice(&fs::read(sidecar_path(blob)).unwrap()).unwrap();
    side["roothash"].as_str().unwrap().to_owned()
}

#[test]
fn exports_lists_and_unexports_over_the_api_socket_with_the_kata_store() {
    let fx = Fixture::new(true);
    let blobs: Vec<PathBuf> = [1, 2, 3].iter().map(|&i| fx.layer(i)).collect();
    let run = Running::start(&fx.config);
    let c = &run.client;

    // Container a: non-block mode, three layers top first (3, 2, 1), per layer, tmpfs upper.
    let resp = c
        .export(&mounts_req("sb1", "a", &fx.overlay_mounts(7, &[3, 2, 1])))
        .unwrap();
    assert_eq!(resp.disks.len(), 3);
    let plan = resp.plan.as_ref().unwrap();
    assert_eq!(plan.container_id, "a");
    assert_eq!(plan.layers.len(), 3);
    assert!(plan.upper.has_tmpfs(), "{plan:?}");
    assert_eq!(plan.upper.tmpfs().size_bytes, 32 << 20);
    let store = fx.dir.path().join("kata");
    let mut minors = BTreeSet::new();
    for ((disk, layer), id) in resp.disks.iter().zip(&plan.layers).zip([3, 2, 1]) {
        assert!(disk.read_only);
        assert_eq!(disk.role.enum_value(), Ok(pb::DiskRole::DISK_ROLE_LAYER));
        assert_eq!(layer.disk.serial(), disk.serial);
        assert_eq!(
            hex::encode(&layer.verity.root_hash),
            root_hash_of(&fx.blob(id))
        );
        assert_eq!(disk.size_bytes, fs::metadata(fx.blob(id)).unwrap().len());
        // The node Kata resolves, exactly as its Go runtime does, names this disk's socket.
        let node = fs::metadata(&disk.device_node).unwrap();
        assert!(node.file_type().is_block_device());
        assert_eq!(libc::major(node.rdev()), 241);
        let minor = libc::minor(node.rdev());
        assert!(minors.insert(minor), "minor {minor} used twice");
        assert_eq!(
            kata_resolve(&store, 241, minor).as_deref(),
            Some(Path::new(&disk.socket))
        );
        assert_eq!(
            layerpass::kata::KataStore::open(&store)
                .unwrap()
                .resolve(241, minor)
                .unwrap(),
            Path::new(&disk.socket)
        );
        // The socket accepts a frontend.
        UnixStream::connect(&disk.socket).unwrap();
    }
    let _ = blobs;

    // The same pair again: ALREADY_EXISTS, and the first export is untouched.
    let (kind, msg) = err_of(c.export(&mounts_req("sb1", "a", &fx.overlay_mounts(7, &[3, 2, 1]))));
    assert_eq!(kind, Kind::AlreadyExists, "{msg}");
    assert!(msg.contains("sb1") && msg.contains('a'), "{msg}");

    // Container b in the same sandbox: block mode, containerd's rwlayer.img made by the
    // daemon (sparse, ext4) in the active snapshot's directory, composite disk.
    fs::create_dir_all(fx.root().join("snapshots/8")).unwrap();
    let mut req = mounts_req("sb1", "b", &fx.block_mounts(8, &[2, 1], 24 << 20));
    req.mode = EnumOrUnknown::new(pb::ExportMode::EXPORT_MODE_COMPOSITE);
    let resp_b = c.export(&req).unwrap();
    assert_eq!(resp_b.disks.len(), 2);
    assert_eq!(
        resp_b.disks[0].role.enum_value(),
        Ok(pb::DiskRole::DISK_ROLE_COMPOSITE)
    );
    let scratch = &resp_b.disks[1];
    assert_eq!(
        scratch.role.enum_value(),
        Ok(pb::DiskRole::DISK_ROLE_SCRATCH)
    );
    assert!(!scratch.read_only);
    assert_eq!(scratch.size_bytes, 24 << 20);
    let rw = fx.root().join("snapshots/8/rwlayer.img");
    let mut sb = [0u8; 2];
    std::os::unix::fs::FileExt::read_exact_at(&fs::File::open(&rw).unwrap(), &mut sb, 1080)
        .unwrap();
    assert_eq!(sb, [0x53, 0xef], "rwlayer.img holds an ext4 superblock");
    let plan_b = resp_b.plan.as_ref().unwrap();
    assert_eq!(plan_b.upper.disk().disk.serial(), scratch.serial);
    assert!(plan_b.layers.iter().all(|l| l.disk.has_partition()));

    // Container c in another sandbox: an OCI image converted into the cache, per layer,
    // an encrypted-disk upper (a fresh sparse image the guest formats).
    let oci = OciDir::new(&fx.dir.path().join("oci"));
    let specs = vec![
        LayerSpec::new(LAYER_TAR, &layer_tar(&[("base", b"base\n")])),
        LayerSpec::new(LAYER_TAR, &layer_tar(&[("top", b"top\n")])),
    ];
    let desc = oci.image(&specs, None);
    oci.write_index(vec![desc]);
    let mut req = pb::ExportRequest::new();
    req.sandbox_id = "sb2".into();
    req.container_id = "c".into();
    let mut img = pb::OciImage::new();
    img.path = oci.root.display().to_string();
    req.set_image(img);
    let mut upper = pb::UpperChoice::new();
    upper.set_encrypted_disk(pb::UpperSize::new());
    req.upper = MessageField::some(upper);
    let resp_c = c.export(&req).unwrap();
    let plan_c = resp_c.plan.as_ref().unwrap();
    assert_eq!(plan_c.layers.len(), 2);
    // top first, named by diff ID
    assert_eq!(plan_c.layers[0].digest, specs[1].diff_id);
    assert_eq!(plan_c.layers[1].digest, specs[0].diff_id);
    assert!(plan_c.upper.has_encrypted_disk());
    let enc = resp_c.disks.last().unwrap();
    assert_eq!(enc.size_bytes, 32 << 20);
    let img_path = fx
        .config
        .state_dir
        .join(format!("scratch/{}.img", enc.serial));
    assert_eq!(
        fs::metadata(&img_path).unwrap().blocks(),
        0,
        "sparse, unformatted"
    );
    // The same image for another sandbox: its layers come from the cache (same blobs,
    // nothing converted again).
    let cached = |dir: &Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut v: Vec<_> = walk(dir)
            .into_iter()
            .map(|p| {
                let m = fs::metadata(&p).unwrap().modified().unwrap();
                (p, m)
            })
            .collect();
        v.sort();
        v
    };
    let before = cached(&fx.config.state_dir.join("layers"));
    assert_eq!(before.len(), 4, "two blobs and their sidecars: {before:?}");
    req.sandbox_id = "sb3".into();
    let resp_d = c.export(&req).unwrap();
    assert_eq!(
        resp_d
            .plan
            .layers
            .iter()
            .map(|l| &l.verity.root_hash)
            .collect::<Vec<_>>(),
        plan_c
            .layers
            .iter()
            .map(|l| &l.verity.root_hash)
            .collect::<Vec<_>>()
    );
    assert_eq!(cached(&fx.config.state_dir.join("layers")), before);
    assert!(c.unexport("sb3", "c").unwrap().existed);

    // List groups by sandbox; Status counts.
    let list = c.list(None).unwrap();
    let sandboxes: Vec<(&str, Vec<&str>)> = list
        .sandboxes
        .iter()
        .map(|s| {
            (
                s.sandbox_id.as_str(),
                s.exports.iter().map(|e| e.container_id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(sandboxes, [("sb1", vec!["a", "b"]), ("sb2", vec!["c"])]);
    assert_eq!(list.sandboxes[0].exports[0].root_hashes.len(), 3);
    assert_eq!(c.list(Some("sb2")).unwrap().sandboxes.len(), 1);
    let st = c.status().unwrap();
    assert_eq!((st.sandboxes, st.exports, st.disks), (2, 3, 3 + 2 + 3));
    // Eight disks, the same threads as none: a control thread and two queue workers.
    assert_eq!(st.vhost_threads, 3);
    assert_eq!((st.connected_disks, st.running_queues), (0, 0));
    assert_eq!(st.verity, "require-sidecar");
    assert_eq!(st.kata_store, store.display().to_string());

    // Unexport everything (twice: idempotent); nothing is left but containerd's own files
    // and the layer cache.
    for (s, ct) in [("sb1", "a"), ("sb1", "b"), ("sb2", "c")] {
        assert!(c.unexport(s, ct).unwrap().existed);
        assert!(!c.unexport(s, ct).unwrap().existed);
    }
    assert!(c.list(None).unwrap().sandboxes.is_empty());
    let left: Vec<PathBuf> = fx
        .leftovers()
        .into_iter()
        .filter(|p| !p.starts_with(fx.config.state_dir.join("layers")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(rw.exists(), "containerd's rwlayer.img is containerd's");
    run.stop();
    // No state row survives: a new daemon starts empty.
    let run = Running::start(&fx.config);
    assert!(run.client.list(None).unwrap().sandboxes.is_empty());
}

#[test]
fn every_bad_input_is_a_typed_error_that_leaves_nothing() {
    let fx = Fixture::new(true);
    fx.layer(1);
    fx.layer(2);
    let run = Running::start(&fx.config);
    let c = &run.client;
    let good = fx.overlay_mounts(7, &[2, 1]);
    let mut cases: Vec<(&str, pb::ExportRequest, Kind, String)> = Vec::new();

    let mut m = good.clone();
    m[0]["source"] = json!(fx.root().join("snapshots/9/layer.erofs"));
    m[0]["options"][2] = json!(format!(
        "X-containerd.dmverity={}",
        fx.root().join("snapshots/9/layer.erofs.dmverity").display()
    ));
    cases.push((
        "missing blob",
        mounts_req("s", "c", &m),
        Kind::NotFound,
        "snapshots/9/layer.erofs".into(),
    ));

    // a sidecar that is not JSON
    fs::create_dir_all(fx.root().join("snapshots/3")).unwrap();
    fs::copy(fx.blob(1), fx.blob(3)).unwrap();
    fs::write(sidecar_path(&fx.blob(3)), b"roothash=abc").unwrap();
    let mut m = good.clone();
    m[0] = fx.erofs(3);
    cases.push((
        "sidecar not JSON",
        mounts_req("s", "c", &m),
        Kind::InvalidArgument,
        "snapshots/3/layer.erofs".into(),
    ));

    // a sidecar whose root hash is another tree's
    fs::create_dir_all(fx.root().join("snapshots/4")).unwrap();
    fs::copy(fx.blob(1), fx.blob(4)).unwrap();
    fs::copy(sidecar_path(&fx.blob(2)), sidecar_path(&fx.blob(4))).unwrap();
    let mut side: Value =
        serde_json::from_slice(&fs::read(sidecar_path(&fx.blob(4))).unwrap()).unwrap();
    let own: Value = serde_json::from_slice(&fs::read(sidecar_path(&fx.blob(1))).unwrap()).unwrap();
    side["hashoffset"] = own["hashoffset"].clone();
    fs::write(
        sidecar_path(&fx.blob(4)),
        serde_json::to_vec(&side).unwrap(),
    )
    .unwrap();
    let mut m = good.clone();
    m[0] = fx.erofs(4);
    cases.push((
        "root hash mismatch",
        mounts_req("s", "c", &m),
        Kind::FailedPrecondition,
        "does not match the hash tree".into(),
    ));

    // no sidecar at all under require-sidecar (no dmverity option, none beside the blob)
    fs::create_dir_all(fx.root().join("snapshots/5")).unwrap();
    fs::copy(fx.blob(1), fx.blob(5)).unwrap();
    let mut m = good.clone();
    m[0] = json!({"type": "erofs", "source": fx.blob(5), "options": ["ro", "loop"]});
    cases.push((
        "no sidecar",
        mounts_req("s", "c", &m),
        Kind::FailedPrecondition,
        "require-sidecar".into(),
    ));

    let mut m = good.clone();
    m[0]["type"] = json!("squashfs");
    cases.push((
        "unknown type",
        mounts_req("s", "c", &m),
        Kind::InvalidArgument,
        "squashfs".into(),
    ));

    let mut m = good.clone();
    m[2]["options"][2] = json!("lowerdir={{ overlay 0 7 }}");
    cases.push((
        "template out of range",
        mounts_req("s", "c", &m),
        Kind::InvalidArgument,
        "overlay 0 7".into(),
    ));

    let mut m = good.clone();
    m[2]["options"][2] = json!("lowerdir={{ mount x }}");
    cases.push((
        "bad template",
        mounts_req("s", "c", &m),
        Kind::InvalidArgument,
        "mount x".into(),
    ));

    cases.push((
        "bad sandbox id",
        mounts_req("../etc", "c", &good),
        Kind::InvalidArgument,
        "sandbox id".into(),
    ));
    cases.push((
        "bad container id",
        mounts_req("s", "c/d", &good),
        Kind::InvalidArgument,
        "container id".into(),
    ));

    let mut req = mounts_req("s", "c", &good);
    let mut g = pb::GuestEndpoint::new();
    g.set_unix_socket(fx.dir.path().join("no-guest.sock").display().to_string());
    req.guest = MessageField::some(g);
    cases.push((
        "guest unreachable",
        req,
        Kind::Unavailable,
        "no-guest.sock".into(),
    ));

    let mut req = pb::ExportRequest::new();
    req.sandbox_id = "s".into();
    req.container_id = "c".into();
    cases.push(("no source", req, Kind::InvalidArgument, "source".into()));

    for (what, req, kind, needle) in cases {
        let (k, msg) = err_of(c.export(&req));
        assert_eq!(k, kind, "{what}: {msg}");
        assert!(
            msg.contains(&needle),
            "{what}: {msg:?} does not name {needle:?}"
        );
        assert!(
            fx.leftovers().is_empty(),
            "{what} left {:?}",
            fx.leftovers()
        );
        assert!(
            c.list(None).unwrap().sandboxes.is_empty(),
            "{what} left a state row"
        );
    }
    // After all that, the good request works.
    c.export(&mounts_req("s", "c", &good)).unwrap();
    c.unexport("s", "c").unwrap();
    run.stop();

    // A socket path longer than sun_path: refused before anything is made.
    let mut long = fx.config.clone();
    long.kata_vhost_user_store = Some(fx.dir.path().join("k".repeat(90)));
    long.api_socket = fx.dir.path().join("api2.sock");
    let run = Running::start(&long);
    let (k, msg) = err_of(run.client.export(&mounts_req("s", "c", &good)));
    assert_eq!(k, Kind::FailedPrecondition, "{msg}");
    assert!(msg.contains("longer than a unix socket address"), "{msg}");
    let left: Vec<_> = fs::read_dir(fx.dir.path().join("k".repeat(90)).join("block/devices"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    run.stop();

    // A Kata store that cannot be written: the daemon does not start, naming it.
    let file = fx.dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let mut bad = fx.config.clone();
    bad.kata_vhost_user_store = Some(file.join("store"));
    let e = Daemon::start(bad).unwrap_err().to_string();
    assert!(e.contains("a-file"), "{e}");
}

/// A guest agent that records the plans it gets and answers them.
#[derive(Default, Clone)]
struct FakeGuest {
    mounted: Arc<Mutex<Vec<gpb::MountRequest>>>,
    unmounted: Arc<Mutex<Vec<String>>>,
    /// Told when the `slow` container's Mount arrives (it then takes 1.5 s).
    arrived: Arc<Mutex<Option<std::sync::mpsc::Sender<()>>>>,
}

fn fake_guest(socket: &Path, guest: &FakeGuest) -> ttrpc::Server {
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", socket.display()))
        .unwrap()
        .register_service(guest_ttrpc::create_guest_agent(Arc::new(guest.clone())));
    server.start().unwrap();
    server
}

fn with_guest(mut req: pb::ExportRequest, socket: &Path) -> pb::ExportRequest {
    let mut g = pb::GuestEndpoint::new();
    g.set_unix_socket(socket.display().to_string());
    req.guest = MessageField::some(g);
    req
}

impl guest_ttrpc::GuestAgent for FakeGuest {
    fn mount(&self, _: &TtrpcContext, req: gpb::MountRequest) -> ttrpc::Result<gpb::MountResponse> {
        if req.container_id == "denied" {
            return Err(Kind::PermissionDenied.to_ttrpc("root hash not in the reference values"));
        }
        if req.container_id == "slow" {
            if let Some(tx) = self.arrived.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
        let mut r = gpb::MountResponse::new();
        r.container_id = req.container_id.clone();
        r.rootfs = format!("/run/layerpass/rootfs/{}", req.container_id);
        self.mounted.lock().unwrap().push(req);
        Ok(r)
    }
    fn unmount(
        &self,
        _: &TtrpcContext,
        req: gpb::UnmountRequest,
    ) -> ttrpc::Result<gpb::UnmountResponse> {
        self.unmounted.lock().unwrap().push(req.container_id);
        Ok(gpb::UnmountResponse::new())
    }
}

#[test]
fn delivers_the_plan_to_the_guest_and_unmounts_it_at_unexport() {
    let fx = Fixture::new(false);
    fx.layer(1);
    let guest = FakeGuest::default();
    let gsock = fx.dir.path().join("guest.sock");
    let mut gserver = ttrpc::Server::new()
        .bind(&format!("unix://{}", gsock.display()))
        .unwrap()
        .register_service(guest_ttrpc::create_guest_agent(Arc::new(guest.clone())));
    gserver.start().unwrap();

    let run = Running::start(&fx.config);
    let mut req = mounts_req("s", "web", &[fx.erofs(1)]);
    let mut g = pb::GuestEndpoint::new();
    g.set_unix_socket(gsock.display().to_string());
    req.guest = MessageField::some(g);
    let resp = run.client.export(&req).unwrap();
    assert_eq!(resp.guest.rootfs, "/run/layerpass/rootfs/web");
    assert_eq!(
        guest.mounted.lock().unwrap().as_slice(),
        [resp.plan.unwrap()]
    );
    // Single-layer images get verity too.
    assert!(guest.mounted.lock().unwrap()[0].layers[0].verity.is_some());
    let listed = run.client.list(None).unwrap();
    assert_eq!(
        listed.sandboxes[0].exports[0].guest.unix_socket(),
        gsock.display().to_string()
    );
    let u = run.client.unexport("s", "web").unwrap();
    assert!(u.existed && u.guest_error.is_empty(), "{u:?}");
    assert_eq!(guest.unmounted.lock().unwrap().as_slice(), ["web"]);

    // A guest that is gone does not keep the host side alive.
    run.client.export(&req).unwrap();
    gserver.shutdown();
    let _ = fs::remove_file(&gsock);
    let u = run.client.unexport("s", "web").unwrap();
    assert!(u.existed && u.guest_error.contains("guest.sock"), "{u:?}");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());

    // A guest that refuses the plan: its code comes back and the export is rolled back.
    let g2 = fx.dir.path().join("guest2.sock");
    let _refusing = fake_guest(&g2, &guest);
    let (kind, msg) = err_of(
        run.client
            .export(&with_guest(mounts_req("s", "denied", &[fx.erofs(1)]), &g2)),
    );
    assert_eq!(kind, Kind::PermissionDenied, "{msg}");
    assert!(
        msg.contains("reference values") && msg.contains("guest2.sock"),
        "{msg}"
    );
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert!(run.client.list(None).unwrap().sandboxes.is_empty());
}

/// SIGTERM while an export waits for its guest: the export finishes and answers, new
/// exports are refused meanwhile, the daemon exits 0 and the next start resumes it.
#[test]
fn sigterm_lets_the_export_under_way_finish() {
    let fx = Fixture::new(false);
    fx.layer(1);
    let guest = FakeGuest::default();
    let (tx, rx) = std::sync::mpsc::channel();
    *guest.arrived.lock().unwrap() = Some(tx);
    let gsock = fx.dir.path().join("guest.sock");
    let _g = fake_guest(&gsock, &guest);
    let cfg = fx.dir.path().join("config.toml");
    fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\nrun_dir = {:?}\nqueues = 1\n",
            fx.config.state_dir, fx.config.run_dir
        ),
    )
    .unwrap();
    let spawn = || {
        let child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_layerpass"))
                .args(["serve", "--config"])
                .arg(&cfg)
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while UnixStream::connect(&fx.config.api_socket).is_err() {
            assert!(start.elapsed() < TIMEOUT, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let mut daemon = spawn();
    let client = HostClient::connect(&fx.config.api_socket, TIMEOUT).unwrap();
    let late = HostClient::connect(&fx.config.api_socket, TIMEOUT).unwrap();
    let req = with_guest(mounts_req("s", "slow", &[fx.erofs(1)]), &gsock);
    let call = std::thread::spawn(move || client.export(&req));
    rx.recv_timeout(TIMEOUT).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&daemon.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // An open connection may still call, but a new export is refused while stopping.
    let (kind, msg) = err_of(late.export(&mounts_req("s", "other", &[fx.erofs(1)])));
    assert_eq!(kind, Kind::Unavailable, "{msg}");
    let resp = call.join().unwrap().expect("the export under way finished");
    assert_eq!(resp.guest.container_id, "slow");
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status}");
    drop(late);
    let _again = spawn();
    let client = HostClient::connect(&fx.config.api_socket, TIMEOUT).unwrap();
    let list = client.list(None).unwrap();
    assert_eq!(list.sandboxes[0].exports[0].container_id, "slow");
    assert_eq!(client.status().unwrap().resumed, 1);
}

#[test]
fn compute_builds_trees_into_the_cache_and_off_plans_without_verity() {
    let mut fx = Fixture::new(false);
    fx.config.verity = VerityMode::Compute;
    fx.config.export_mode = ExportMode::Composite;
    fx.config.upper = UpperKind::Disk;
    let blob = fx.blob(1);
    fs::create_dir_all(blob.parent().unwrap()).unwrap();
    let tar = layer_tar(&[("f", b"no sidecar\n")]);
    let opts = ConvertOptions {
        no_verity: true,
        ..ConvertOptions::default()
    };
    convert_layer(&tar[..], &blob, &opts).unwrap();
    assert!(!sidecar_path(&blob).exists());
    let before = fs::read(&blob).unwrap();
    fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let mounts = [json!({"type": "erofs", "source": blob, "options": ["ro", "loop"]})];
    let run = Running::start(&fx.config);
    let r1 = run.client.export(&mounts_req("s", "a", &mounts)).unwrap();
    let trees: Vec<_> = fs::read_dir(fx.config.state_dir.join("trees"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(trees.len(), 2, "{trees:?}"); // the tree and its root record
    let tree = trees
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "tree"))
        .unwrap();
    // The root the plan carries is veritysetup's for that tree file.
    let out = Command::new("veritysetup")
        .args(["verify"])
        .arg(&blob)
        .arg(tree)
        .arg(hex::encode(&r1.plan.layers[0].verity.root_hash))
        .output();
    match out {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => assert!(std::env::var_os("CI").is_none(), "veritysetup: {e}"),
    }
    assert_eq!(
        fs::read(&blob).unwrap(),
        before,
        "containerd's blob is never written"
    );
    assert!(r1.plan.upper.has_disk());
    // A second export reuses the tree.
    let r2 = run.client.export(&mounts_req("s", "b", &mounts)).unwrap();
    assert_eq!(
        r1.plan.layers[0].verity.root_hash,
        r2.plan.layers[0].verity.root_hash
    );
    assert_eq!(
        fs::read_dir(fx.config.state_dir.join("trees"))
            .unwrap()
            .count(),
        2
    );
    drop(run);

    // verity = off: no verity in the plan.
    let mut off = fx.config.clone();
    off.verity = VerityMode::Off;
    off.state_dir = fx.dir.path().join("state-off");
    off.cache_dir = fx.dir.path().join("state-off");
    off.run_dir = fx.dir.path().join("run-off");
    off.api_socket = fx.dir.path().join("run-off/api.sock");
    off.export_mode = ExportMode::PerLayer;
    let run = Running::start(&off);
    let r = run.client.export(&mounts_req("s", "a", &mounts)).unwrap();
    assert!(r.plan.layers[0].verity.is_none());
}

/// The binary: `layerpass serve` killed with SIGKILL and started again serves the same
/// sockets from its state, sweeps what an interrupted export left, and a second daemon on
/// the same state refuses to start, naming the first.
#[test]
fn a_killed_daemon_resumes_its_exports_and_a_second_one_is_refused() {
    let fx = Fixture::new(true);
    fx.layer(1);
    fx.layer(2);
    let cfg = fx.dir.path().join("config.toml");
    fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\nrun_dir = {:?}\nkata_vhost_user_store = {:?}\nqueues = 1\n",
            fx.config.state_dir,
            fx.config.run_dir,
            fx.dir.path().join("kata")
        ),
    )
    .unwrap();
    let serve = || {
        let child = Command::new(env!("CARGO_BIN_EXE_layerpass"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .spawn()
            .unwrap();
        let guard = KillOnDrop(child);
        let start = Instant::now();
        while !fx.config.api_socket.exists() || UnixStream::connect(&fx.config.api_socket).is_err()
        {
            assert!(start.elapsed() < TIMEOUT, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        guard
    };
    let mut first = serve();
    let client = HostClient::connect(&fx.config.api_socket, TIMEOUT).unwrap();
    let resp = client
        .export(&mounts_req("s", "c", &fx.overlay_mounts(7, &[2, 1])))
        .unwrap();
    drop(client);

    // A second daemon on the same state refuses, naming the first.
    let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", first.0.id())), "{err}");

    // kill -9, an orphan socket with a daemon name appears, restart.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let orphan = fx.dir.path().join("kata/block/sockets/lp0123456789ab-l0");
    fs::write(&orphan, b"").unwrap();
    let foreign = fx.dir.path().join("kata/block/sockets/spdk-vol0");
    fs::write(&foreign, b"").unwrap();
    let mut second = serve();
    let client = HostClient::connect(&fx.config.api_socket, TIMEOUT).unwrap();
    let list = client.list(None).unwrap();
    assert_eq!(list.sandboxes.len(), 1);
    assert_eq!(list.sandboxes[0].exports[0].disks, resp.disks);
    assert!(!list.sandboxes[0].exports[0].source.contains("NOT SERVED"));
    assert_eq!(client.status().unwrap().resumed, 1);
    for d in &resp.disks {
        UnixStream::connect(&d.socket).unwrap();
        assert_eq!(
            kata_resolve(
                &fx.dir.path().join("kata"),
                241,
                libc::minor(fs::metadata(&d.device_node).unwrap().rdev())
            )
            .as_deref(),
            Some(Path::new(&d.socket))
        );
    }
    assert!(
        !orphan.exists(),
        "an orphan with the daemon's name is swept"
    );
    assert!(foreign.exists(), "what is not the daemon's is left alone");
    drop(client);

    // SIGTERM: a clean exit that keeps the export; the next start resumes it.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&second.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = second.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !fx.config.api_socket.exists(),
        "the API socket is removed at exit"
    );
    let _third = serve();
    let client = HostClient::connect(&fx.config.api_socket, TIMEOUT).unwrap();
    let list = client.list(None).unwrap();
    assert_eq!(list.sandboxes[0].exports[0].disks, resp.disks);
    assert_eq!(client.status().unwrap().resumed, 1);
    // The CLI's text forms, through the configuration's api_socket.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        cli(&["list"]),
        "sandbox s\n  container c: 2 disks, containerd mounts (2 layers)\n"
    );
    let status = cli(&["status"]);
    assert!(
        status.contains("1 exports in 1 sandboxes, 2 disks (0 connected, 0 queues running, ")
            && status.contains(" threads); 1 resumed at start")
            && status.contains("verity require-sidecar"),
        "{status}"
    );
    assert_eq!(
        cli(&["unexport", "--sandbox", "s", "--container", "c"]),
        "unexported s/c\n"
    );
    assert_eq!(
        cli(&["unexport", "--sandbox", "s", "--container", "c"]),
        "s/c was not exported\n"
    );
    assert_eq!(fx.leftovers(), [foreign]);
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

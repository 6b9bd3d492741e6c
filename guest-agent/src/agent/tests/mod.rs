//! Agent tests on the recording fake kernel: order of kernel calls, rollback, sharing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::io::Errno;

use super::{Agent, AgentConfig};
use crate::kernel::fake::FakeKernel;
use crate::plan::{
    CorruptionMode, DiskRef, FsType, HashAlgorithm, LayerSpec, MountPlan, OverlayOptions,
    UpperSpec, VerityParams,
};

const EBUSY: i32 = Errno::BUSY.raw_os_error();
const EIO: i32 = Errno::IO.raw_os_error();

struct Env {
    dir: tempfile::TempDir,
    kernel: Arc<FakeKernel>,
    agent: Agent,
}

fn root(n: u8) -> Vec<u8> {
    vec![n; 32]
}

fn layer(n: u8, with_verity: bool) -> LayerSpec {
    LayerSpec {
        digest: format!("sha256:{}", hex::encode([n; 32])),
        disk: DiskRef::Serial(format!("layer{n}")),
        fs_type: FsType::Erofs,
        verity: with_verity.then(|| VerityParams {
            algorithm: HashAlgorithm::Sha256,
            format: 1,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 10,
            hash_start_block: 11,
            salt: vec![0; 32],
            root_hash: root(n),
            on_corruption: CorruptionMode::Eio,
        }),
    }
}

fn plan(id: &str, layers: &[u8]) -> MountPlan {
    MountPlan {
        container_id: id.into(),
        layers: layers.iter().map(|n| layer(*n, true)).collect(),
        upper: UpperSpec::Disk {
            disk: DiskRef::Serial(format!("scratch-{id}")),
            fs_type: "ext4".into(),
        },
        mount_point: None,
        overlay: OverlayOptions::default(),
    }
}

fn env_with(config: impl FnOnce(&mut AgentConfig)) -> Env {
    env_built(config, |agent| agent)
}

/// An environment whose agent `build` finishes (adding recorders, say).
fn env_built(config: impl FnOnce(&mut AgentConfig), build: impl FnOnce(Agent) -> Agent) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let kernel = Arc::new(FakeKernel::new());
    for n in 0..=200u8 {
        kernel.add_disk(DiskRef::Serial(format!("layer{n}")), 12 * 8);
    }
    for id in ["c1", "c2", "c3"] {
        kernel.add_disk(DiskRef::Serial(format!("scratch-{id}")), 1 << 20);
    }
    let mut cfg = AgentConfig::with_run_dir(dir.path().join("run"));
    // One thread: the tests check the exact order of kernel calls (the parallel set-up
    // has its own tests).
    cfg.setup_threads = 1;
    config(&mut cfg);
    let agent = build(Agent::with_kernel(cfg, kernel.clone()).unwrap());
    Env { dir, kernel, agent }
}

fn env() -> Env {
    env_with(|_| {})
}

fn dm(n: u8) -> String {
    format!("lp-{}", hex::encode([n; 16]))
}

impl Env {
    fn run(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn assert_clean(&self) {
        assert!(
            self.kernel.mounts().is_empty(),
            "mounts left: {:?}",
            self.kernel.mounts()
        );
        assert!(
            self.kernel.dm_devices().is_empty(),
            "dm devices left: {:?}",
            self.kernel.dm_devices()
        );
        assert!(
            self.kernel.nodes().is_empty(),
            "nodes left: {:?}",
            self.kernel.nodes()
        );
        let leftovers: Vec<_> = walk(&self.run().join("containers"))
            .into_iter()
            .chain(walk(&self.run().join("layers")))
            .collect();
        assert!(leftovers.is_empty(), "files left: {leftovers:?}");
        assert_eq!(self.agent.status().layers, 0);
        assert_eq!(self.agent.status().containers, 0);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path());
            out.extend(walk(&e.path()));
        }
    }
    out
}

mod container;
mod erofs_support;
mod events;
mod layer;
mod measure;

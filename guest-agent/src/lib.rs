//! layerpass guest agent: opens layer disks through dm-verity, mounts EROFS read-only and
//! stacks the layers with overlayfs under a writable upper.
//!
//! The core is [`agent::Agent`]: it takes validated [`plan::MountPlan`]s and talks to the
//! kernel through the [`kernel::Kernel`] trait (real: [`kernel::linux::LinuxKernel`];
//! tests: [`kernel::fake::FakeKernel`]).

pub mod agent;
pub mod cli;
pub mod erofs_support;
pub mod error;
pub mod events;
pub mod fuzz_harness;
pub mod kernel;
pub mod layers;
pub mod measure;
pub mod overlay;
pub mod plan;
pub mod policy;
pub mod process;
mod rollback;
pub mod runlock;
pub mod server;
pub mod state;
mod sync;
pub mod verity;

pub use agent::{Agent, AgentConfig};
pub use error::AgentError;
pub use kernel::Kernel;
pub use plan::{
    AgentStatus, ContainerStatus, CorruptionMode, DiskRef, FsType, HashAlgorithm, LayerSpec,
    MountPlan, MountResult, MountedLayer, OverlayOptions, UpperSpec, VerityParams,
};
pub use policy::ReferenceValues;

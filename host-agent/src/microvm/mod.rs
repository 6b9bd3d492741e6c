//! MicroVMs for `layerpass run`: guest assets from Debian packages (the cloud kernel and
//! its modules, busybox-static) cached on the host, the initramfs, the accelerator choice
//! (KVM only when a probe guest boots under it) and the QEMU process.
//!
//! The integration tests boot their guests with the same pieces.

pub mod accel;
pub mod assets;
pub mod cpio;
pub mod error;
pub mod initramfs;
pub mod modules;
pub mod process;
pub mod qemu;
pub mod tool;

pub use accel::Accel;
pub use assets::{AssetCache, Kernel};
pub use error::VmError;
pub use initramfs::Initramfs;
pub use process::VmProcess;

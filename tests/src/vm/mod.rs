//! QEMU guest test harness, shared by every VM test.
//!
//! The host kernel has no device-mapper, so dm-verity (and everything that builds on it)
//! is tested in a real Linux guest: Debian's cloud kernel ([`assets::cloud_kernel`]), an
//! initramfs built here ([`Initramfs`]) with busybox-static, the kernel modules and the
//! test's script, and QEMU ([`VmBuilder`], [`VmGuard`]) with virtio-blk disks,
//! vhost-user-blk devices and virtio-serial ports for host↔guest messages.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use layerpass_tests::vm::{Initramfs, TestImage, VmBuilder, assets};
//!
//! let kernel = assets::cloud_kernel()?;
//! let dir = tempfile::tempdir()?;
//! let initrd = dir.path().join("initrd.gz");
//! Initramfs::standard(&kernel)?
//!     .test_script("mount -t erofs -o ro $(lp_disk layer0) /mnt\nsha256sum /mnt/file\n")
//!     .write(&initrd)?;
//! let mut vm = VmBuilder::new("my-test", &kernel, &initrd)
//!     .disk(&dir.path().join("layer.erofs"), "layer0")
//!     .spawn()?;
//! vm.wait_result(Duration::from_secs(600))?;
//! # Ok(()) }
//! ```
//!
//! See `docs/testing.md`.

pub mod accel;
pub mod assets;
pub mod blk_serve;
pub mod console;
pub mod guard;
pub mod initramfs;
pub mod modules;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod static_bin;

use std::time::Duration;

pub use accel::Accel;
pub use blk_serve::{serve_blk, serve_blk_logged};
pub use guard::VmGuard;
pub use initramfs::{BOOTED_MARKER, Initramfs, RESULT_MARKER, TestImage};
pub use process::ChildGuard;
pub use qemu::{VhostUserBlk, VmBuilder};
pub use static_bin::{static_binary, static_binary_release, static_rustc};

use crate::tools::require_tool;

/// A generous bound for one guest test under TCG on a busy machine: it only guards
/// against hangs and is no performance threshold.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The host tools every VM test needs. A missing tool fails the test, naming it and its
/// Debian package; with `LAYERPASS_ALLOW_SKIP=1` the skip is recorded and this returns
/// false (the test returns).
#[track_caller]
pub fn require_vm_tools() -> bool {
    [
        (qemu::QEMU, "qemu-system-x86"),
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg", "dpkg"),
        ("depmod", "kmod"),
    ]
    .iter()
    .all(|(tool, package)| require_tool(tool, package).is_some())
}

//! The kernel calls the agent makes, behind a trait so tests can record them with a fake.
//! `linux` is the real thing (sysfs + uevents, device-mapper ioctls, mount syscalls);
//! `fake` records every call and fails the ones a test asks it to.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plan::{DiskRef, OverlayOptions};

pub mod fake;
pub mod linux;

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A block device found for a `DiskRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Its node, `/dev/vdb` or `/dev/vdb3`.
    pub path: PathBuf,
    /// Its device number (what the verity table names).
    pub dev: DevNum,
    /// Size in 512-byte sectors.
    pub sectors: u64,
}

/// One device-mapper target line: `<start> <length> <target_type> <params>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmTarget {
    /// First sector.
    pub start: u64,
    /// Length in 512-byte sectors.
    pub length: u64,
    /// Target type, e.g. `verity`.
    pub target_type: String,
    /// The target's parameters.
    pub params: String,
}

/// What to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// EROFS, read-only, from a block device.
    Erofs {
        /// The block device.
        source: PathBuf,
    },
    /// A writable filesystem on a block device (the scratch disk).
    Disk {
        /// The block device.
        source: PathBuf,
        /// `ext4` or `xfs`.
        fs_type: String,
    },
    /// A tmpfs limited to `size_bytes`.
    Tmpfs {
        /// Size limit in bytes.
        size_bytes: u64,
    },
    /// overlayfs.
    Overlay(OverlaySpec),
}

/// An overlay mount. Paths are relative to `base` (short, so that 128 layers fit the
/// legacy mount data page when the kernel has no `lowerdir+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySpec {
    /// The directory the relative paths start from (the container's directory).
    pub base: PathBuf,
    /// Lower directories, top first, relative to `base`.
    pub lowers: Vec<PathBuf>,
    /// The upper directory, relative to `base`.
    pub upper: PathBuf,
    /// The work directory, relative to `base`.
    pub work: PathBuf,
    /// Flags.
    pub options: OverlayOptions,
}

/// The kernel interface of the agent. Every method is one small kernel operation so a
/// fake can record the order and fail any of them.
pub trait Kernel: Send + Sync + fmt::Debug {
    /// Finds the disk (or partition); when it is not there yet, waits up to `timeout` for
    /// a kernel uevent announcing it. `Ok(None)` after the timeout.
    fn wait_disk(&self, disk: &DiskRef, timeout: Duration) -> io::Result<Option<BlockDevice>>;

    /// Creates an (empty) device-mapper device, read-only, without udev.
    fn dm_create(&self, name: &str, uuid: &str) -> io::Result<DevNum>;
    /// Loads a read-only table into the device's inactive slot.
    fn dm_load(&self, name: &str, targets: &[DmTarget]) -> io::Result<()>;
    /// Creates an (empty) writable device-mapper device, without udev (the encrypted
    /// upper's integrity and crypt devices).
    fn dm_create_writable(&self, name: &str, uuid: &str) -> io::Result<DevNum>;
    /// Loads a writable table into the device's inactive slot.
    fn dm_load_writable(&self, name: &str, targets: &[DmTarget]) -> io::Result<()>;
    /// Overwrites the 4096-byte blocks at the byte offsets `blocks` of the block device
    /// `device` with zeros, with direct I/O, durable when this returns (dm-integrity's
    /// superblock before it formats; the blocks `mke2fs` writes in part).
    fn zero_blocks(&self, device: &Path, blocks: &[u64]) -> io::Result<()>;
    /// Makes an ext2 filesystem on `device` (4096-byte blocks, 256-byte inodes for the
    /// xattrs overlayfs keeps on its upper) with the `mke2fs` on `PATH` (busybox's or
    /// e2fsprogs').
    fn make_ext2(&self, device: &Path) -> io::Result<()>;
    /// Resumes the device (activates the loaded table).
    fn dm_resume(&self, name: &str) -> io::Result<()>;
    /// Removes the device.
    fn dm_remove(&self, name: &str) -> io::Result<()>;
    /// The device's status line (`V` or `C` for verity), `None` when there is no such device.
    fn dm_status(&self, name: &str) -> io::Result<Option<String>>;
    /// The path of the device's node (`/dev/mapper/<name>`).
    fn dm_node_path(&self, name: &str) -> PathBuf;
    /// Creates the block device node `path` for `dev` (when udev is not there to do it).
    /// `Ok(false)` when a node for `dev` already exists there.
    fn make_block_node(&self, path: &Path, dev: DevNum) -> io::Result<bool>;
    /// Removes a node made by `make_block_node`.
    fn remove_node(&self, path: &Path) -> io::Result<()>;

    /// Mounts `spec` (not an overlay) on `target`, an existing directory the agent made.
    fn mount(&self, spec: &MountSpec, target: &Path) -> io::Result<()>;
    /// Mounts the overlay `spec` on the directory open as `dir` (resolved by the agent
    /// beneath its rootfs root), so nothing can swap the path between the agent's checks
    /// and the mount; `shown` is that directory's path, for messages and records.
    fn mount_overlay_at(
        &self,
        spec: &OverlaySpec,
        dir: BorrowedFd<'_>,
        shown: &Path,
    ) -> io::Result<()>;
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;

    /// Reads `buf.len()` bytes at byte `offset` of the block device `device` (a layer's
    /// EROFS superblock, through its dm-verity device).
    fn read_device(&self, device: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The running kernel: `uname -r` and `uname -v`.
    fn release(&self) -> KernelRelease;
}

/// The running kernel's `uname -r` and `uname -v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRelease {
    /// `uname -r`, e.g. `6.1.0-57-cloud-amd64`.
    pub release: String,
    /// `uname -v`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-10-01)`.
    pub version: String,
}

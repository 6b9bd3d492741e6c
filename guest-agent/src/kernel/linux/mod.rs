//! The real kernel: sysfs and netlink uevents for disks, device-mapper ioctls for
//! dm-verity and the encrypted upper, direct writes to a block device and `mke2fs`, mount
//! syscalls.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

use super::{BlockDevice, DevNum, DmTarget, Kernel, KernelRelease, MountSpec, OverlaySpec};
use crate::plan::DiskRef;

pub mod blockdev;
pub mod disk;
pub mod dm;
pub mod mount;
pub mod uevent;

/// The Linux kernel interface.
#[derive(Debug)]
pub struct LinuxKernel {
    sys_block: PathBuf,
    dev_dir: PathBuf,
    dm: dm::DeviceMapper,
    lowerdir_plus: bool,
    page_size: usize,
    release: KernelRelease,
    /// The disks and partitions found by the last sysfs scan.
    disks: std::sync::Mutex<disk::DiskIndex>,
}

impl Default for LinuxKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxKernel {
    /// Uses `/sys/block`, `/dev` and `/dev/mapper`; checks the kernel release for
    /// overlayfs `lowerdir+` support.
    pub fn new() -> Self {
        let (sys_block, dev_dir) = disk::default_dirs();
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy().into_owned();
        let version = uname.version().to_string_lossy().into_owned();
        let lowerdir_plus = mount::kernel_has_lowerdir_plus(&release);
        tracing::debug!(release, version, lowerdir_plus, "kernel");
        Self {
            sys_block,
            dev_dir,
            dm: dm::DeviceMapper::default(),
            lowerdir_plus,
            page_size: rustix::param::page_size(),
            release: KernelRelease { release, version },
            disks: std::sync::Mutex::default(),
        }
    }
}

impl Kernel for LinuxKernel {
    fn wait_disk(&self, disk: &DiskRef, timeout: Duration) -> io::Result<Option<BlockDevice>> {
        disk::wait(&self.sys_block, &self.dev_dir, &self.disks, disk, timeout)
    }

    fn dm_create(&self, name: &str, uuid: &str) -> io::Result<DevNum> {
        self.dm.create(name, uuid, false)
    }

    fn dm_load(&self, name: &str, targets: &[DmTarget]) -> io::Result<()> {
        self.dm.load(name, targets, false)
    }

    fn dm_create_writable(&self, name: &str, uuid: &str) -> io::Result<DevNum> {
        self.dm.create(name, uuid, true)
    }

    fn dm_load_writable(&self, name: &str, targets: &[DmTarget]) -> io::Result<()> {
        self.dm.load(name, targets, true)
    }

    fn zero_blocks(&self, device: &Path, blocks: &[u64]) -> io::Result<()> {
        blockdev::zero_blocks(device, blocks)
    }

    fn make_ext2(&self, device: &Path) -> io::Result<()> {
        blockdev::make_ext2(device)
    }

    fn dm_resume(&self, name: &str) -> io::Result<()> {
        self.dm.resume(name)
    }

    fn dm_remove(&self, name: &str) -> io::Result<()> {
        self.dm.remove(name)
    }

    fn dm_status(&self, name: &str) -> io::Result<Option<String>> {
        self.dm.status(name)
    }

    fn dm_node_path(&self, name: &str) -> PathBuf {
        self.dev_dir.join("mapper").join(name)
    }

    fn make_block_node(&self, path: &Path, dev: DevNum) -> io::Result<bool> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if let Ok(m) = std::fs::metadata(path) {
            let want = makedev(dev.major, dev.minor);
            if m.file_type().is_block_device() && m.rdev() == want {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not block device {dev}", path.display()),
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        mknodat(
            CWD,
            path,
            FileType::BlockDevice,
            Mode::from_raw_mode(0o600),
            makedev(dev.major, dev.minor),
        )?;
        Ok(true)
    }

    fn remove_node(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn mount(&self, spec: &MountSpec, target: &Path) -> io::Result<()> {
        mount::mount_spec(spec, target)
    }

    fn mount_overlay_at(
        &self,
        spec: &OverlaySpec,
        dir: BorrowedFd<'_>,
        _shown: &Path,
    ) -> io::Result<()> {
        mount::mount_overlay_at(spec, dir, self.lowerdir_plus, self.page_size)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        mount::unmount_path(target)
    }

    fn read_device(&self, device: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        blockdev::read_at(device, offset, buf)
    }

    fn release(&self) -> KernelRelease {
        self.release.clone()
    }
}

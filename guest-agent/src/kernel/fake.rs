//! A recording fake kernel for tests (this crate's and the server's): disks are declared
//! up front, every call is recorded in order, and any call can be made to fail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::io::Errno;

use super::{BlockDevice, DevNum, DmTarget, Kernel, KernelRelease, MountSpec, OverlaySpec};
use crate::plan::DiskRef;
use crate::sync::lock;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `wait_disk`.
    WaitDisk(DiskRef),
    /// `dm_create(name)`.
    DmCreate(String),
    /// `dm_load(name, targets)`.
    DmLoad(String, Vec<DmTarget>),
    /// `dm_resume(name)`.
    DmResume(String),
    /// `dm_remove(name)`.
    DmRemove(String),
    /// `make_block_node(path)`.
    MakeNode(PathBuf),
    /// `remove_node(path)`.
    RemoveNode(PathBuf),
    /// `zero_blocks(device, offsets)`.
    ZeroBlocks(PathBuf, Vec<u64>),
    /// `make_ext2(device)`.
    MakeExt2(PathBuf),
    /// `mount(spec, target)`.
    Mount(MountSpec, PathBuf),
    /// `unmount(target)`.
    Unmount(PathBuf),
    /// `read_device(device, offset, len)`.
    ReadDevice(PathBuf, u64, usize),
}

impl Call {
    /// A short label (`dm_create lp-ab..`, `mount /run/...`) for order assertions.
    pub fn label(&self) -> String {
        match self {
            Self::WaitDisk(d) => format!("wait_disk {d}"),
            Self::DmCreate(n) => format!("dm_create {n}"),
            Self::DmLoad(n, _) => format!("dm_load {n}"),
            Self::DmResume(n) => format!("dm_resume {n}"),
            Self::DmRemove(n) => format!("dm_remove {n}"),
            Self::MakeNode(p) => format!("make_node {}", p.display()),
            Self::RemoveNode(p) => format!("remove_node {}", p.display()),
            Self::ZeroBlocks(p, _) => format!("zero_blocks {}", p.display()),
            Self::MakeExt2(p) => format!("make_ext2 {}", p.display()),
            Self::Mount(_, t) => format!("mount {}", t.display()),
            Self::Unmount(t) => format!("unmount {}", t.display()),
            Self::ReadDevice(p, at, len) => format!("read {} {at}+{len}", p.display()),
        }
    }
}

type FailRule = Box<dyn Fn(&Call) -> Option<i32> + Send + Sync>;
type MountHook = Box<dyn Fn(&MountSpec, &Path) + Send + Sync>;

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    disks: HashMap<DiskRef, BlockDevice>,
    dm: BTreeMap<String, (DevNum, bool)>,
    /// The last table loaded into each device.
    tables: BTreeMap<String, Vec<DmTarget>>,
    /// Devices created writable.
    writable: BTreeSet<String>,
    next_minor: u32,
    nodes: BTreeSet<PathBuf>,
    mounts: BTreeMap<PathBuf, MountSpec>,
    fail: Vec<FailRule>,
    on_mount: Vec<MountHook>,
    /// The first bytes of disks whose contents a test set ([`FakeKernel::set_contents`]).
    contents: HashMap<DiskRef, Vec<u8>>,
    release: Option<KernelRelease>,
}

/// The first 2048 bytes of an EROFS image whose superblock has these fields (the rest
/// zero); `devt_slotoff` is 9 (after the superblock) when there are extra devices.
pub fn erofs_head(blkszbits: u8, feature_incompat: u32, extra_devices: u16) -> Vec<u8> {
    let mut b = vec![0u8; 2048];
    b[1024..1028].copy_from_slice(&crate::erofs_support::EROFS_MAGIC.to_le_bytes());
    b[1024 + 12] = blkszbits;
    b[1024 + 80..1024 + 84].copy_from_slice(&feature_incompat.to_le_bytes());
    b[1024 + 86..1024 + 88].copy_from_slice(&extra_devices.to_le_bytes());
    let slot: u16 = if extra_devices > 0 { 9 } else { 0 };
    b[1024 + 88..1024 + 90].copy_from_slice(&slot.to_le_bytes());
    b
}

/// The recording fake.
#[derive(Default)]
pub struct FakeKernel {
    state: Mutex<State>,
}

impl std::fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("FakeKernel")
            .field("calls", &s.calls.len())
            .field("dm", &s.dm.keys().collect::<Vec<_>>())
            .field("mounts", &s.mounts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FakeKernel {
    /// An empty fake: no disks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a disk (or partition) of `sectors` 512-byte sectors; returns its node.
    pub fn add_disk(&self, disk: DiskRef, sectors: u64) -> PathBuf {
        let mut s = lock(&self.state);
        let n = u32::try_from(s.disks.len()).unwrap_or(u32::MAX);
        let path = PathBuf::from(format!("/dev/fake{n}"));
        let dev = BlockDevice {
            path: path.clone(),
            dev: DevNum {
                major: 254,
                minor: n * 16,
            },
            sectors,
        };
        s.disks.insert(disk, dev);
        path
    }

    /// Makes every call for which `rule` returns `Some(errno)` fail with that errno.
    pub fn fail_when(&self, rule: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) {
        lock(&self.state).fail.push(Box::new(rule));
    }

    /// Runs `hook` after every successful mount (with the lock released): it writes what
    /// the mounted filesystem already holds, e.g. the files a host put on a scratch disk.
    pub fn when_mounted(&self, hook: impl Fn(&MountSpec, &Path) + Send + Sync + 'static) {
        lock(&self.state).on_mount.push(Box::new(hook));
    }

    /// Sets the first bytes of `disk` (what `read_device` returns for it and for a verity
    /// device over it). Disks without contents read as a 4096-byte-block EROFS image.
    pub fn set_contents(&self, disk: DiskRef, bytes: Vec<u8>) {
        lock(&self.state).contents.insert(disk, bytes);
    }

    /// Sets what `release` returns (default `6.12.0-fake`, `#1 SMP fake`).
    pub fn set_release(&self, release: &str, version: &str) {
        lock(&self.state).release = Some(KernelRelease {
            release: release.to_owned(),
            version: version.to_owned(),
        });
    }

    /// Removes all failure rules.
    pub fn clear_failures(&self) {
        lock(&self.state).fail.clear();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// Labels of every call so far.
    pub fn labels(&self) -> Vec<String> {
        self.calls().iter().map(Call::label).collect()
    }

    /// Forgets the recorded calls (state stays).
    pub fn clear_calls(&self) {
        lock(&self.state).calls.clear();
    }

    /// Current mounts: target → spec.
    pub fn mounts(&self) -> BTreeMap<PathBuf, MountSpec> {
        lock(&self.state).mounts.clone()
    }

    /// Current device-mapper devices by name.
    pub fn dm_devices(&self) -> Vec<String> {
        lock(&self.state).dm.keys().cloned().collect()
    }

    /// Current nodes made with `make_block_node`.
    pub fn nodes(&self) -> Vec<PathBuf> {
        lock(&self.state).nodes.iter().cloned().collect()
    }

    /// How many times a call with this label was made.
    pub fn count(&self, label: &str) -> usize {
        self.labels().iter().filter(|l| *l == label).count()
    }

    fn record(&self, call: Call) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut s = lock(&self.state);
        let errno = s.fail.iter().find_map(|rule| rule(&call));
        s.calls.push(call);
        match errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(s),
        }
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

const ENOENT: i32 = Errno::NOENT.raw_os_error();
const ENXIO: i32 = Errno::NXIO.raw_os_error();
const EBUSY: i32 = Errno::BUSY.raw_os_error();
const EEXIST: i32 = Errno::EXIST.raw_os_error();
const ENOTDIR: i32 = Errno::NOTDIR.raw_os_error();
const EINVAL: i32 = Errno::INVAL.raw_os_error();

impl FakeKernel {
    fn create_in(s: &mut State, name: &str) -> io::Result<DevNum> {
        if s.dm.contains_key(name) {
            return Err(errno(EEXIST));
        }
        s.next_minor += 1;
        let dev = DevNum {
            major: 253,
            minor: s.next_minor,
        };
        s.dm.insert(name.to_owned(), (dev, false));
        Ok(dev)
    }

    fn load_in(s: &mut State, name: &str, targets: &[DmTarget]) -> io::Result<()> {
        if !s.dm.contains_key(name) {
            return Err(errno(ENXIO));
        }
        s.tables.insert(name.to_owned(), targets.to_vec());
        Ok(())
    }

    /// The last table loaded into the device `name`.
    pub fn table(&self, name: &str) -> Option<Vec<DmTarget>> {
        lock(&self.state).tables.get(name).cloned()
    }
}

impl Kernel for FakeKernel {
    fn wait_disk(&self, disk: &DiskRef, _timeout: Duration) -> io::Result<Option<BlockDevice>> {
        let s = self.record(Call::WaitDisk(disk.clone()))?;
        Ok(s.disks.get(disk).cloned())
    }

    fn dm_create(&self, name: &str, _uuid: &str) -> io::Result<DevNum> {
        let mut s = self.record(Call::DmCreate(name.to_owned()))?;
        Self::create_in(&mut s, name)
    }

    fn dm_load(&self, name: &str, targets: &[DmTarget]) -> io::Result<()> {
        let mut s = self.record(Call::DmLoad(name.to_owned(), targets.to_vec()))?;
        if s.writable.contains(name) {
            // A writable device takes writable tables only.
            return Err(errno(EINVAL));
        }
        Self::load_in(&mut s, name, targets)
    }

    fn dm_create_writable(&self, name: &str, _uuid: &str) -> io::Result<DevNum> {
        let mut s = self.record(Call::DmCreate(name.to_owned()))?;
        let dev = Self::create_in(&mut s, name)?;
        s.writable.insert(name.to_owned());
        Ok(dev)
    }

    fn dm_load_writable(&self, name: &str, targets: &[DmTarget]) -> io::Result<()> {
        let mut s = self.record(Call::DmLoad(name.to_owned(), targets.to_vec()))?;
        if !s.writable.contains(name) {
            return Err(errno(EINVAL));
        }
        Self::load_in(&mut s, name, targets)
    }

    fn zero_blocks(&self, device: &Path, blocks: &[u64]) -> io::Result<()> {
        let s = self.record(Call::ZeroBlocks(device.to_owned(), blocks.to_vec()))?;
        let known = s.disks.values().any(|d| d.path == device) || s.nodes.contains(device);
        if known { Ok(()) } else { Err(errno(ENOENT)) }
    }

    fn make_ext2(&self, device: &Path) -> io::Result<()> {
        let s = self.record(Call::MakeExt2(device.to_owned()))?;
        if s.nodes.contains(device) {
            Ok(())
        } else {
            Err(errno(ENOENT))
        }
    }

    fn dm_resume(&self, name: &str) -> io::Result<()> {
        let mut s = self.record(Call::DmResume(name.to_owned()))?;
        match s.dm.get_mut(name) {
            Some(d) => {
                d.1 = true;
                Ok(())
            }
            None => Err(errno(ENXIO)),
        }
    }

    fn dm_remove(&self, name: &str) -> io::Result<()> {
        let mut s = self.record(Call::DmRemove(name.to_owned()))?;
        let node = self.dm_node_path(name);
        if s.mounts
            .values()
            .any(|m| matches!(m, MountSpec::Erofs { source } | MountSpec::Disk { source, .. } if *source == node))
        {
            return Err(errno(EBUSY));
        }
        s.tables.remove(name);
        s.writable.remove(name);
        s.dm.remove(name).map(|_| ()).ok_or_else(|| errno(ENXIO))
    }

    /// Verity devices report `V`; an integrity device formats a disk of `n` sectors to
    /// `n - n / 16` data sectors (a stand-in for the real metadata overhead).
    fn dm_status(&self, name: &str) -> io::Result<Option<String>> {
        let s = lock(&self.state);
        let Some(_) = s.dm.get(name) else {
            return Ok(None);
        };
        let integrity = s
            .tables
            .get(name)
            .and_then(|t| t.first())
            .filter(|t| t.target_type == "integrity");
        Ok(Some(match integrity {
            Some(t) => {
                let dev = t.params.split(' ').next().unwrap_or_default();
                let sectors = s
                    .disks
                    .values()
                    .find(|d| d.dev.to_string() == dev)
                    .map_or(0, |d| d.sectors);
                format!("0 {} -", sectors - sectors / 16)
            }
            None => "V".to_owned(),
        }))
    }

    fn dm_node_path(&self, name: &str) -> PathBuf {
        Path::new("/dev/mapper").join(name)
    }

    fn make_block_node(&self, path: &Path, _dev: DevNum) -> io::Result<bool> {
        let mut s = self.record(Call::MakeNode(path.to_owned()))?;
        Ok(s.nodes.insert(path.to_owned()))
    }

    fn remove_node(&self, path: &Path) -> io::Result<()> {
        let mut s = self.record(Call::RemoveNode(path.to_owned()))?;
        if s.nodes.remove(path) {
            Ok(())
        } else {
            Err(errno(ENOENT))
        }
    }

    fn mount(&self, spec: &MountSpec, target: &Path) -> io::Result<()> {
        let mut s = self.record(Call::Mount(spec.clone(), target.to_owned()))?;
        if !target.is_dir() {
            return Err(errno(ENOTDIR));
        }
        if s.mounts.contains_key(target) {
            return Err(errno(EBUSY));
        }
        if let MountSpec::Overlay(o) = spec {
            for rel in o.lowers.iter().chain([&o.upper, &o.work]) {
                if !o.base.join(rel).is_dir() {
                    return Err(errno(ENOENT));
                }
            }
            if o.lowers.is_empty() {
                return Err(errno(EINVAL));
            }
        }
        s.mounts.insert(target.to_owned(), spec.clone());
        let hooks = std::mem::take(&mut s.on_mount);
        drop(s);
        for hook in &hooks {
            hook(spec, target);
        }
        lock(&self.state).on_mount.extend(hooks);
        Ok(())
    }

    fn mount_overlay_at(
        &self,
        spec: &OverlaySpec,
        dir: BorrowedFd<'_>,
        _shown: &Path,
    ) -> io::Result<()> {
        // Like the kernel, the fake mounts on the directory the fd is, wherever its path
        // now leads: the mount is recorded at the fd's own path.
        let st = rustix::fs::fstat(dir)?;
        let actual = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
        let at = std::fs::symlink_metadata(&actual)?;
        if (st.st_dev, st.st_ino) != (at.dev(), at.ino()) {
            return Err(io::Error::other("fake: the fd's directory is gone"));
        }
        self.mount(&MountSpec::Overlay(spec.clone()), &actual)
    }

    /// A disk's contents; a verity device's are its data disk's (the table's first device).
    fn read_device(&self, device: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = self.record(Call::ReadDevice(device.to_owned(), offset, buf.len()))?;
        let dev = match device
            .strip_prefix("/dev/mapper")
            .ok()
            .and_then(|n| n.to_str())
        {
            Some(name) => {
                let table = s.tables.get(name).ok_or_else(|| errno(ENXIO))?;
                let data_dev = table
                    .first()
                    .and_then(|t| t.params.split(' ').nth(1))
                    .unwrap_or_default();
                s.disks.iter().find(|(_, d)| d.dev.to_string() == data_dev)
            }
            None => s.disks.iter().find(|(_, d)| d.path == device),
        };
        let Some((disk, _)) = dev else {
            return Err(errno(ENOENT));
        };
        let default = erofs_head(12, 0, 0);
        let bytes = s.contents.get(disk).unwrap_or(&default);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn release(&self) -> KernelRelease {
        lock(&self.state)
            .release
            .clone()
            .unwrap_or_else(|| KernelRelease {
                release: "6.12.0-fake".to_owned(),
                version: "#1 SMP fake".to_owned(),
            })
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut s = self.record(Call::Unmount(target.to_owned()))?;
        // A mount with mounts beneath it is busy.
        if s.mounts
            .keys()
            .any(|m| m != target && m.starts_with(target))
        {
            return Err(errno(EBUSY));
        }
        let spec = s.mounts.remove(target).ok_or_else(|| errno(EINVAL))?;
        // What was written into a writable mount lived on that filesystem: it goes away
        // with the mount (the fake keeps no contents).
        if matches!(spec, MountSpec::Disk { .. } | MountSpec::Tmpfs { .. }) {
            for entry in std::fs::read_dir(target)?.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
        }
        Ok(())
    }
}

//! Finding virtio-blk disks by serial (`/sys/block/*/serial`) and GPT partitions by name
//! (`PARTNAME=` in the partition's `uevent`), waiting for hot-plugged ones via uevents.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

use super::uevent::UeventSocket;
use crate::kernel::{BlockDevice, DevNum};
use crate::plan::DiskRef;

/// How often sysfs is rescanned even without uevents (a missed event costs at most this).
const RESCAN: Duration = Duration::from_millis(500);

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// `MAJ:MIN` from a sysfs `dev` file.
pub fn parse_dev(s: &str) -> Option<DevNum> {
    let (maj, min) = s.trim().split_once(':')?;
    Some(DevNum {
        major: maj.parse().ok()?,
        minor: min.parse().ok()?,
    })
}

/// The `PARTNAME=` of a sysfs `uevent` file's text.
pub fn partname(uevent: &str) -> Option<&str> {
    uevent.lines().find_map(|l| l.strip_prefix("PARTNAME="))
}

fn block_device(sys_dir: &Path, dev_dir: &Path) -> Option<BlockDevice> {
    let name = sys_dir.file_name()?;
    let dev = parse_dev(&read_trimmed(&sys_dir.join("dev"))?)?;
    let sectors = read_trimmed(&sys_dir.join("size"))?.parse().ok()?;
    Some(BlockDevice {
        path: dev_dir.join(name),
        dev,
        sectors,
    })
}

/// Looks for `disk` under `sys_block` (`/sys/block`) once.
pub fn scan(sys_block: &Path, dev_dir: &Path, disk: &DiskRef) -> io::Result<Option<BlockDevice>> {
    Ok(DiskIndex::scan(sys_block, dev_dir)?.get(disk))
}

/// Makes sure the device node exists (devtmpfs normally made it already).
fn ensure_node(dev: &BlockDevice) -> io::Result<()> {
    match fs::metadata(&dev.path) {
        Ok(m) if m.file_type().is_block_device() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a block device", dev.path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            mknodat(
                CWD,
                &dev.path,
                FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                makedev(dev.dev.major, dev.dev.minor),
            )?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Every disk with a serial and every GPT partition on one, found in one pass over sysfs:
/// a plan of 128 composite partitions costs one scan, not one per layer.
#[derive(Debug, Default)]
pub struct DiskIndex {
    entries: HashMap<DiskRef, (PathBuf, BlockDevice)>,
}

impl DiskIndex {
    /// Scans `sys_block` once.
    pub fn scan(sys_block: &Path, dev_dir: &Path) -> io::Result<Self> {
        let mut entries = HashMap::new();
        for entry in fs::read_dir(sys_block)? {
            let dir = entry?.path();
            let Some(serial) = read_trimmed(&dir.join("serial")) else {
                continue;
            };
            if let Some(dev) = block_device(&dir, dev_dir) {
                entries.insert(DiskRef::Serial(serial.clone()), (dir.clone(), dev));
            }
            let Ok(parts) = fs::read_dir(&dir) else {
                continue;
            };
            for part in parts {
                let part = part?.path();
                if !part.join("partition").exists() {
                    continue;
                }
                let uevent = fs::read_to_string(part.join("uevent")).unwrap_or_default();
                if let Some(name) = partname(&uevent)
                    && let Some(dev) = block_device(&part, dev_dir)
                {
                    let key = DiskRef::Partition {
                        serial: serial.clone(),
                        name: name.to_owned(),
                    };
                    entries.insert(key, (part.clone(), dev));
                }
            }
        }
        Ok(Self { entries })
    }

    /// The device for `disk` if the index has it and sysfs still says so (same device
    /// number, same serial or partition name): a disk unplugged and another plugged since
    /// the scan is not taken for the old one.
    pub fn get(&self, disk: &DiskRef) -> Option<BlockDevice> {
        let (dir, dev) = self.entries.get(disk)?;
        let now = parse_dev(&read_trimmed(&dir.join("dev"))?)?;
        let still = match disk {
            DiskRef::Serial(serial) => read_trimmed(&dir.join("serial")).as_ref() == Some(serial),
            DiskRef::Partition { name, .. } => {
                let uevent = fs::read_to_string(dir.join("uevent")).ok()?;
                partname(&uevent) == Some(name.as_str())
            }
        };
        (still && now == dev.dev).then(|| dev.clone())
    }
}

/// Finds `disk`, waiting up to `timeout` for it to be hot-plugged. A disk in `index` (and
/// still there) costs a few reads; otherwise sysfs is scanned into the index, and if the
/// disk is not there yet the uevent socket is opened and sysfs scanned again before the
/// first wait, so no event between a scan and the wait is lost.
pub fn wait(
    sys_block: &Path,
    dev_dir: &Path,
    index: &std::sync::Mutex<DiskIndex>,
    disk: &DiskRef,
    timeout: Duration,
) -> io::Result<Option<BlockDevice>> {
    let deadline = Instant::now() + timeout;
    let found = |dev: BlockDevice| -> io::Result<Option<BlockDevice>> {
        ensure_node(&dev)?;
        tracing::debug!(%disk, device = %dev.path.display(), "disk found");
        Ok(Some(dev))
    };
    let rescan = || -> io::Result<Option<BlockDevice>> {
        let fresh = DiskIndex::scan(sys_block, dev_dir)?;
        let dev = fresh.get(disk);
        *index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(dev)
    };
    let cached = index
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(disk);
    if let Some(dev) = cached {
        return found(dev);
    }
    if let Some(dev) = rescan()? {
        return found(dev);
    }
    let socket = match UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no uevent socket, polling sysfs");
            None
        }
    };
    tracing::info!(%disk, timeout_s = timeout.as_secs_f64(), "waiting for the disk");
    loop {
        if let Some(dev) = rescan()? {
            return found(dev);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let slice = (deadline - now).min(RESCAN);
        match &socket {
            // Any event is a reason to look again.
            Some(s) => drop(s.wait(slice)?),
            None => std::thread::sleep(slice.min(Duration::from_millis(100))),
        }
    }
}

/// Where the real kernel looks.
pub fn default_dirs() -> (PathBuf, PathBuf) {
    (PathBuf::from("/sys/block"), PathBuf::from("/dev"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let vdb = t.path().join("vdb");
        fs::create_dir_all(vdb.join("vdb1")).unwrap();
        fs::create_dir_all(vdb.join("vdb2")).unwrap();
        fs::write(vdb.join("serial"), "lp-composite\n").unwrap();
        fs::write(vdb.join("dev"), "254:16\n").unwrap();
        fs::write(vdb.join("size"), "8192\n").unwrap();
        for (p, n, min) in [("vdb1", "lp-aaaa", 17), ("vdb2", "lp-bbbb", 18)] {
            let d = vdb.join(p);
            fs::write(d.join("partition"), "1\n").unwrap();
            fs::write(d.join("dev"), format!("254:{min}\n")).unwrap();
            fs::write(d.join("size"), "2048\n").unwrap();
            fs::write(
                d.join("uevent"),
                format!("MAJOR=254\nDEVNAME={p}\nDEVTYPE=partition\nPARTNAME={n}\n"),
            )
            .unwrap();
        }
        let vdc = t.path().join("vdc");
        fs::create_dir_all(&vdc).unwrap();
        fs::write(vdc.join("serial"), "scratch\n").unwrap();
        fs::write(vdc.join("dev"), "254:32\n").unwrap();
        fs::write(vdc.join("size"), "100\n").unwrap();
        t
    }

    #[test]
    fn finds_disks_by_serial_and_partitions_by_name() {
        let sys = fake_sysfs();
        let dev = Path::new("/dev");
        let d = scan(sys.path(), dev, &DiskRef::Serial("scratch".into()))
            .unwrap()
            .unwrap();
        assert_eq!(d.path, Path::new("/dev/vdc"));
        assert_eq!(
            d.dev,
            DevNum {
                major: 254,
                minor: 32
            }
        );
        assert_eq!(d.sectors, 100);
        let p = DiskRef::Partition {
            serial: "lp-composite".into(),
            name: "lp-bbbb".into(),
        };
        let d = scan(sys.path(), dev, &p).unwrap().unwrap();
        assert_eq!(d.path, Path::new("/dev/vdb2"));
        assert_eq!(d.dev.minor, 18);
        let missing = DiskRef::Partition {
            serial: "lp-composite".into(),
            name: "lp-cccc".into(),
        };
        assert_eq!(scan(sys.path(), dev, &missing).unwrap(), None);
        assert_eq!(
            scan(sys.path(), dev, &DiskRef::Serial("nope".into())).unwrap(),
            None
        );
    }

    #[test]
    fn wait_gives_up_after_the_timeout() {
        let sys = fake_sysfs();
        let start = Instant::now();
        let r = wait(
            sys.path(),
            Path::new("/dev"),
            &std::sync::Mutex::default(),
            &DiskRef::Serial("never".into()),
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(r, None);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn parses_dev_numbers() {
        assert_eq!(
            parse_dev("253:0\n"),
            Some(DevNum {
                major: 253,
                minor: 0
            })
        );
        assert_eq!(parse_dev("x"), None);
    }

    /// An index entry is used only while sysfs still says the same: a disk replaced since
    /// the scan (another serial, another partition name or device number) is looked up
    /// again.
    #[test]
    fn a_stale_index_entry_is_not_used() {
        let sys = fake_sysfs();
        let dev = Path::new("/dev");
        let index = DiskIndex::scan(sys.path(), dev).unwrap();
        let scratch = DiskRef::Serial("scratch".into());
        let part = DiskRef::Partition {
            serial: "lp-composite".into(),
            name: "lp-aaaa".into(),
        };
        assert!(index.get(&scratch).is_some());
        assert!(index.get(&part).is_some());
        fs::write(sys.path().join("vdc/serial"), "other\n").unwrap();
        assert!(index.get(&scratch).is_none());
        fs::write(sys.path().join("vdb/vdb1/dev"), "254:99\n").unwrap();
        assert!(index.get(&part).is_none());
        let again = DiskIndex::scan(sys.path(), dev).unwrap();
        assert_eq!(again.get(&part).unwrap().dev.minor, 99);
        assert!(again.get(&DiskRef::Serial("other".into())).is_some());
    }
}

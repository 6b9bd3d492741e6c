//! The writable scratch disk: a sparse file of a given size (containerd's quota
//! `default_size`), ext4-formatted when created; containerd's block-mode `rwlayer.img` is
//! used as it is. FLUSH is `fdatasync`; DISCARD and WRITE_ZEROES punch holes.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use vm_memory::VolatileSlice;

use super::error::DiskError;
use super::io::{pread_exact, pwrite_all};
use super::{Disk, check_range, serial_from, slices_len};

/// Size granularity of a scratch disk.
pub const SCRATCH_ALIGN: u64 = 4096;
/// Smallest scratch disk (room for an ext4 journal and a little data).
pub const MIN_SCRATCH: u64 = 16 << 20;

#[derive(Debug)]
pub struct ScratchDisk {
    file: File,
    path: PathBuf,
    size: u64,
    serial: Vec<u8>,
}

impl ScratchDisk {
    /// Opens `path`, or creates it sparse with `size` bytes and an ext4 filesystem.
    pub fn open_or_create(
        path: &Path,
        size: Option<u64>,
        serial: Option<&str>,
    ) -> Result<Self, DiskError> {
        if !path.exists() {
            let size = size.ok_or_else(|| DiskError::Invalid {
                what: path.display().to_string(),
                reason: "does not exist and no size was given to create it".into(),
            })?;
            create_ext4(path, size)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(DiskError::io("open", path))?;
        let meta = file.metadata().map_err(DiskError::io("stat", path))?;
        if !meta.is_file() {
            return Err(DiskError::Invalid {
                what: path.display().to_string(),
                reason: "not a regular file".into(),
            });
        }
        let len = meta.len();
        if len == 0 || !len.is_multiple_of(SCRATCH_ALIGN) {
            return Err(DiskError::Invalid {
                what: path.display().to_string(),
                reason: format!("size {len} is not a positive multiple of {SCRATCH_ALIGN}"),
            });
        }
        if let Some(s) = size.filter(|&s| s != len) {
            tracing::warn!(path = %path.display(), requested = s, actual = len, "scratch disk exists; using its size");
        }
        let default_serial = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            file,
            path: path.to_owned(),
            size: len,
            serial: serial_from(serial.unwrap_or(&default_serial)),
        })
    }

    fn punch(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        check_range(offset, len, self.size)?;
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(DiskError::OutOfRange {
                offset,
                len,
                size: self.size,
            });
        };
        // SAFETY: plain syscall on a valid fd owned by self.file; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                n,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(DiskError::Io {
                op: "punch a hole in",
                path: self.path.clone(),
                source: std::io::Error::last_os_error(),
            })
        }
    }
}

/// Creates a sparse file with an ext4 filesystem, under a temporary name renamed at the end.
fn create_ext4(path: &Path, size: u64) -> Result<(), DiskError> {
    if size < MIN_SCRATCH || !size.is_multiple_of(SCRATCH_ALIGN) {
        return Err(DiskError::Invalid {
            what: format!("scratch size {size}"),
            reason: format!(
                "must be a multiple of {SCRATCH_ALIGN} of at least {MIN_SCRATCH} bytes"
            ),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".layerpass-scratch-")
        .tempfile_in(dir)
        .map_err(DiskError::io("create a temporary file in", dir))?;
    tmp.as_file()
        .set_len(size)
        .map_err(DiskError::io("size", tmp.path().to_owned()))?;
    let out = Command::new("mkfs.ext4")
        // 4096-byte blocks: the guest sees 4096-byte logical sectors (BLK_SIZE), and mke2fs
        // picks 1024-byte blocks for a small file, which the guest then cannot mount.
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
        ])
        .arg(tmp.path())
        .output()
        .map_err(DiskError::io("run mkfs.ext4 on", tmp.path().to_owned()))?;
    if !out.status.success() {
        return Err(DiskError::Invalid {
            what: format!("mkfs.ext4 on {}", path.display()),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    // Synced, renamed (never over an existing disk), directory synced.
    layerpass_fsutil::persist_noclobber(tmp, path).map_err(|e| DiskError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

impl Disk for ScratchDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        false
    }

    fn serial(&self) -> &[u8] {
        &self.serial
    }

    fn read_at(&self, offset: u64, dst: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        check_range(offset, slices_len(dst), self.size)?;
        pread_exact(&self.file, dst, offset).map_err(DiskError::io("read", &self.path))
    }

    fn write_at(&self, offset: u64, src: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        check_range(offset, slices_len(src), self.size)?;
        pwrite_all(&self.file, src, offset).map_err(DiskError::io("write", &self.path))
    }

    fn flush(&self) -> Result<(), DiskError> {
        self.file
            .sync_data()
            .map_err(DiskError::io("sync", &self.path))
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.punch(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.punch(offset, len)
    }
}

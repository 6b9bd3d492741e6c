//! Writing to a block device directly: zeroing blocks (dm-integrity's superblock, so the
//! kernel formats it; the blocks `mke2fs` writes in part) and making an ext2 with `mke2fs`;
//! reading a few bytes of one (a layer's EROFS superblock).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// Alignment and granularity of direct I/O (the largest logical block size we meet).
const DIRECT_ALIGN: usize = 4096;

/// Overwrites the 4096-byte blocks at byte offsets `blocks` of `device` with zeros,
/// `O_DIRECT | O_SYNC` (nothing stays in the page cache to hide the kernel's own writes
/// from later readers, and no write is a read-modify-write).
pub fn zero_blocks(device: &Path, blocks: &[u64]) -> io::Result<()> {
    // A zeroed buffer aligned for O_DIRECT, cut from a larger one (no unsafe allocation).
    let buf = vec![0u8; 2 * DIRECT_ALIGN];
    let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
    let zeros = buf.get(at..at + DIRECT_ALIGN).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            "cannot align a direct-I/O buffer",
        )
    })?;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc_flags())
        .open(device)?;
    for &offset in blocks {
        if !offset.is_multiple_of(DIRECT_ALIGN as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("block offset {offset} is not a multiple of {DIRECT_ALIGN}"),
            ));
        }
        file.write_all_at(zeros, offset)?;
    }
    file.sync_all()
}

/// Reads `buf.len()` bytes at byte `offset` of `device` (read-only, through the page
/// cache the filesystem mounted from it later shares).
pub fn read_at(device: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
        .open(device)?;
    file.read_exact_at(buf, offset)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::SYNC | rustix::fs::OFlags::CLOEXEC).bits()
        as i32
}

/// `mke2fs -F -b 4096 -I 256 -m 0 <device>`: options both busybox's and e2fsprogs'
/// `mke2fs` take. Its output is kept for the error message only.
pub fn make_ext2(device: &Path) -> io::Result<()> {
    let out = Command::new("mke2fs")
        .args(["-F", "-b", "4096", "-I", "256", "-m", "0"])
        .arg(device)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running mke2fs: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let text: String = text.trim().chars().take(400).collect();
    Err(io::Error::other(format!(
        "mke2fs {} failed ({}): {text}",
        device.display(),
        out.status
    )))
}

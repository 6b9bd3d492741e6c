//! Best-effort hints to the kernel about a file being written: reserve its disk space
//! ahead of the writer, start its writeback behind it. Failures are logged at trace level
//! and otherwise ignored: neither hint changes what the file contains, and the final
//! `fsync` is what makes a file durable.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Reserves `len` bytes of disk space at `offset` without changing the file size
/// (`fallocate` with `FALLOC_FL_KEEP_SIZE`): later writes find their blocks allocated and
/// ext4 skips the delayed-allocation bookkeeping of every page. Truncating the file to its
/// final size frees what was reserved beyond it.
pub fn reserve(file: &File, offset: u64, len: u64) {
    let Some((offset, len)) = range(offset, len) else {
        return;
    };
    // SAFETY: fallocate only reads its integer arguments; `file` owns the descriptor for
    // the whole call.
    let rc = unsafe { libc::fallocate64(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    log_failure(rc, "fallocate");
}

/// Asks the kernel to start writing `len` bytes at `offset` back to the disk, without
/// waiting (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`).
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    let Some((offset, len)) = range(offset, len) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; `file` owns the descriptor
    // for the whole call.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    log_failure(rc, "sync_file_range");
}

fn range(offset: u64, len: u64) -> Option<(libc::off64_t, libc::off64_t)> {
    Some((
        libc::off64_t::try_from(offset).ok()?,
        libc::off64_t::try_from(len).ok()?,
    ))
}

fn log_failure(rc: libc::c_int, call: &'static str) {
    if rc != 0 {
        tracing::trace!(call, error = %std::io::Error::last_os_error(), "file system hint failed");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn hints_leave_size_and_contents_alone() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 10_000]).unwrap();
        reserve(&f, 8192, 1 << 20);
        start_writeback(&f, 0, 10_000);
        // out of range: ignored
        reserve(&f, u64::MAX, 1);
        start_writeback(&f, 0, u64::MAX);
        assert_eq!(f.metadata().unwrap().len(), 10_000);
        use std::os::unix::fs::FileExt;
        let mut all = vec![0u8; 10_000];
        f.read_exact_at(&mut all, 0).unwrap();
        assert!(all.iter().all(|&b| b == 7));
    }
}

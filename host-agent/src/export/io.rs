//! Positional vectored I/O between files and memory slices, with no bounce buffer.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::VolatileSlice;

/// `IOV_MAX` on Linux.
const IOV_MAX: usize = 1024;
static ZEROS: [u8; 65536] = [0; 65536];

/// Fills every slice with zeros.
pub(super) fn zero(dst: &[VolatileSlice<'_>]) {
    for s in dst {
        let mut done = 0;
        while done < s.len() {
            let n = (s.len() - done).min(ZEROS.len());
            if let Ok(sub) = s.subslice(done, n) {
                sub.copy_from(&ZEROS[..n]);
            }
            done += n;
        }
    }
}

/// Reads exactly `len(dst)` bytes from `file` at `offset` into `dst`. Fails with
/// `UnexpectedEof` if the file ends first.
pub(super) fn pread_exact(
    file: &File,
    dst: &[VolatileSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    let mut slices: Vec<VolatileSlice<'_>> = dst.to_vec();
    while !slices.is_empty() {
        let n = vectored(file, &slices, offset, Op::Read)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before the disk did",
            ));
        }
        offset += n as u64;
        advance(&mut slices, n);
    }
    Ok(())
}

/// Writes all of `src` to `file` at `offset`.
pub(super) fn pwrite_all(
    file: &File,
    src: &[VolatileSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    let mut slices: Vec<VolatileSlice<'_>> = src.to_vec();
    while !slices.is_empty() {
        let n = vectored(file, &slices, offset, Op::Write)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        offset += n as u64;
        advance(&mut slices, n);
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Op {
    Read,
    Write,
}

/// One `preadv`/`pwritev` over at most `IOV_MAX` slices, retried on `EINTR`.
fn vectored(file: &File, slices: &[VolatileSlice<'_>], offset: u64, op: Op) -> io::Result<usize> {
    let batch = &slices[..slices.len().min(IOV_MAX)];
    let guards: Vec<_> = batch.iter().map(VolatileSlice::ptr_guard_mut).collect();
    let iov: Vec<libc::iovec> = guards
        .iter()
        .zip(batch)
        .map(|(g, s)| libc::iovec {
            iov_base: g.as_ptr().cast(),
            iov_len: s.len(),
        })
        .collect();
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
    // iov.len() <= IOV_MAX (1024), which fits in c_int.
    let count = iov.len() as libc::c_int;
    loop {
        let n = match op {
            // SAFETY: every iovec points at a live VolatileSlice (kept alive by `guards` and
            // `batch`) of exactly iov_len bytes; the kernel writes at most that many bytes into
            // each. The fd is valid for the lifetime of `file`.
            Op::Read => unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), count, off) },
            // SAFETY: as above; the kernel only reads from the iovecs.
            Op::Write => unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), count, off) },
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Drops the first `n` bytes from a slice list.
pub(super) fn advance(slices: &mut Vec<VolatileSlice<'_>>, mut n: usize) {
    let mut drop_count = 0;
    for s in slices.iter_mut() {
        if n == 0 {
            break;
        }
        if n >= s.len() {
            n -= s.len();
            drop_count += 1;
        } else {
            // n < len, so the offset is in range.
            if let Ok(rest) = s.offset(n) {
                *s = rest;
            }
            n = 0;
        }
    }
    slices.drain(..drop_count);
}

/// The sub-list of `slices` covering bytes `[skip, skip + len)` of their concatenation.
pub(super) fn window<'a>(
    slices: &[VolatileSlice<'a>],
    mut skip: usize,
    mut len: usize,
) -> Vec<VolatileSlice<'a>> {
    let mut out = Vec::new();
    for s in slices {
        if len == 0 {
            break;
        }
        if skip >= s.len() {
            skip -= s.len();
            continue;
        }
        let take = (s.len() - skip).min(len);
        if let Ok(sub) = s.subslice(skip, take) {
            out.push(sub);
        }
        len -= take;
        skip = 0;
    }
    out
}

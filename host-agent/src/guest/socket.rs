//! Connecting a stream socket before a deadline: non-blocking `connect`, then `poll` for
//! completion. The descriptor handed back is blocking again (ttrpc reads it after its
//! own `poll`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// How long to wait before retrying a unix `connect` whose listener's backlog is full
/// (unix sockets say `EAGAIN` then, instead of completing in the background).
const BACKLOG_RETRY: Duration = Duration::from_millis(10);

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the deadline passed")
}

/// The time left before `deadline`, or a `TimedOut` error.
pub(super) fn remaining(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(timed_out)
}

fn stream_socket(family: AddressFamily) -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

/// A unix stream socket connected to `path`.
pub(super) fn unix(path: &Path, deadline: Instant) -> io::Result<OwnedFd> {
    let addr = SocketAddrUnix::new(path)?;
    let fd = stream_socket(AddressFamily::UNIX)?;
    connect(fd, deadline, |fd| Ok(rustix::net::connect(fd, &addr)?))
}

/// An AF_VSOCK stream socket connected to `cid:port`.
pub(super) fn vsock(cid: u32, port: u32, deadline: Instant) -> io::Result<OwnedFd> {
    let fd = stream_socket(AddressFamily::VSOCK)?;
    let addr = libc::sockaddr_vm {
        svm_family: libc::AF_VSOCK as libc::sa_family_t,
        svm_reserved1: 0,
        svm_port: port,
        svm_cid: cid,
        svm_zero: [0; 4],
    };
    connect(fd, deadline, |fd| {
        // SAFETY: `fd` is an open socket this function owns; `addr` is a fully
        // initialised `sockaddr_vm` that outlives the call, and the length passed is its
        // size, so the kernel reads only that struct.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    })
}

/// Runs `attempt` (a non-blocking `connect`) until it completes, fails or `deadline`
/// passes; then makes `fd` blocking.
fn connect(
    fd: OwnedFd,
    deadline: Instant,
    mut attempt: impl FnMut(&OwnedFd) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    loop {
        match attempt(&fd) {
            Ok(()) => break,
            // In progress (or interrupted, which also completes in the background):
            // wait until the socket is writable, then read the outcome.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => {
                wait_writable(&fd, deadline)?;
                rustix::net::sockopt::socket_error(&fd)??;
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                std::thread::sleep(remaining(deadline)?.min(BACKLOG_RETRY));
            }
            Err(e) => return Err(e),
        }
    }
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(fd)
}

fn wait_writable(fd: &OwnedFd, deadline: Instant) -> io::Result<()> {
    loop {
        let left = Timespec::try_from(remaining(deadline)?).map_err(io::Error::other)?;
        let mut fds = [PollFd::new(fd, PollFlags::OUT)];
        match rustix::event::poll(&mut fds, Some(&left)) {
            Ok(0) => {}
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

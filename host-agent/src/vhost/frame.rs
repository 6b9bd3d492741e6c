//! Whether a frontend's next vhost-user message has arrived whole, looked at without reading
//! it, so the control thread hands the vhost crate (whose reads block, and retry on `EAGAIN`)
//! only messages it can read at once. A frontend that sends half a message, or stops reading
//! its replies, then costs the other disks nothing.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use rustix::net::RecvFlags;

/// Bytes of a vhost-user message header: request, flags, payload size (each `u32`).
pub const HEADER_LEN: usize = 12;
/// Largest payload a frontend may send (the vhost crate's `MAX_MSG_SIZE`).
pub const MAX_PAYLOAD: usize = 0x1000;
/// Replies not yet read by the frontend above which it is taken to have stopped reading
/// (replies are at most a few KiB; a unix socket's send buffer holds about 200 KiB).
pub const MAX_UNREAD_REPLIES: usize = 64 << 10;

/// What the socket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// At least one whole message.
    Message,
    /// Part of a message: wait for the rest.
    Partial,
    /// Nothing.
    Empty,
    /// The frontend closed its end (and nothing whole is left).
    Closed,
    /// A header announcing a payload larger than any message.
    Oversized(usize),
    /// The frontend does not read its replies.
    NotReading(usize),
}

/// Looks at the socket's receive and send queues.
pub fn ready(s: &UnixStream) -> io::Result<Ready> {
    let unread = unsent(s)?;
    if unread > MAX_UNREAD_REPLIES {
        return Ok(Ready::NotReading(unread));
    }
    let queued = usize::try_from(rustix::io::ioctl_fionread(s)?).unwrap_or(usize::MAX);
    let mut hdr = [0u8; HEADER_LEN];
    let (got, _) = match rustix::net::recv(s, &mut hdr, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok(r) => r,
        Err(e) if e == rustix::io::Errno::AGAIN => return Ok(Ready::Empty),
        Err(e) => return Err(e.into()),
    };
    if got == 0 {
        return Ok(if queued == 0 {
            Ready::Closed
        } else {
            Ready::Partial
        });
    }
    if got < HEADER_LEN {
        return Ok(Ready::Partial);
    }
    let size = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
    if size > MAX_PAYLOAD {
        return Ok(Ready::Oversized(size));
    }
    Ok(if queued >= HEADER_LEN + size {
        Ready::Message
    } else {
        Ready::Partial
    })
}

/// Bytes sent on `s` that the peer has not read yet (`SIOCOUTQ`).
fn unsent(s: &UnixStream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer, which points at `n`
    // and outlives the call; the fd is open for as long as `s` is borrowed.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(size: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(1u32.to_le_bytes());
        h.extend(1u32.to_le_bytes());
        h.extend(size.to_le_bytes());
        h
    }

    #[test]
    fn whole_partial_oversized_closed() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        assert_eq!(ready(&b).expect("ready"), Ready::Empty);
        a.write_all(&header(8)[..5]).expect("write");
        assert_eq!(ready(&b).expect("ready"), Ready::Partial);
        a.write_all(&header(8)[5..]).expect("write");
        assert_eq!(
            ready(&b).expect("ready"),
            Ready::Partial,
            "header without payload"
        );
        a.write_all(&[0; 7]).expect("write");
        assert_eq!(ready(&b).expect("ready"), Ready::Partial);
        a.write_all(&[0; 1]).expect("write");
        assert_eq!(ready(&b).expect("ready"), Ready::Message);
        drop(a);
        assert_eq!(
            ready(&b).expect("ready"),
            Ready::Message,
            "still there after close"
        );

        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(&header(u32::MAX)).expect("write");
        assert_eq!(
            ready(&b).expect("ready"),
            Ready::Oversized(u32::MAX as usize)
        );
        let (a, b) = UnixStream::pair().expect("pair");
        drop(a);
        assert_eq!(ready(&b).expect("ready"), Ready::Closed);
    }

    #[test]
    fn a_peer_that_does_not_read_is_seen() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let chunk = vec![0u8; 16 << 10];
        let mut sent = 0;
        while sent <= MAX_UNREAD_REPLIES {
            match b.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => panic!("send buffer full after {sent} bytes: {e}"),
            }
        }
        assert!(matches!(ready(&b).expect("ready"), Ready::NotReading(_)));
        drop(a);
    }
}

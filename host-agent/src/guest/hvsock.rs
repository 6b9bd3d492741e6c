//! The hybrid vsock handshake (Cloud Hypervisor, Firecracker): on the device's unix
//! socket the host writes `CONNECT <port>\n` and the VMM answers `OK <n>\n` once the
//! guest accepted, then the socket carries the guest connection's bytes.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::socket::remaining;

/// The longest reply line read, newline included.
pub const MAX_REPLY: usize = 64;

/// Why the handshake failed.
#[derive(Debug)]
pub(super) enum HandshakeError {
    /// The deadline passed.
    TimedOut,
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The reply is not `OK <n>\n` (or the peer closed first): the line as received.
    Refused(String),
}

fn classify(e: io::Error) -> HandshakeError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HandshakeError::TimedOut,
        _ => HandshakeError::Io(e),
    }
}

/// Sends `CONNECT <port>\n` and reads the reply byte by byte up to its newline (so no
/// byte of the guest's stream is consumed), before `deadline`. Leaves `stream` without
/// timeouts.
pub(super) fn handshake(
    stream: &mut UnixStream,
    port: u32,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let left = || remaining(deadline).map_err(|_| HandshakeError::TimedOut);
    stream
        .set_write_timeout(Some(left()?))
        .map_err(HandshakeError::Io)?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(classify)?;
    let mut line = Vec::with_capacity(MAX_REPLY);
    loop {
        if line.len() == MAX_REPLY {
            return Err(HandshakeError::Refused(lossy(&line)));
        }
        stream
            .set_read_timeout(Some(left()?))
            .map_err(HandshakeError::Io)?;
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => return Err(HandshakeError::Refused(lossy(&line))),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(e)),
        }
    }
    if !is_ok(&line) {
        return Err(HandshakeError::Refused(lossy(&line)));
    }
    stream.set_read_timeout(None).map_err(HandshakeError::Io)?;
    stream.set_write_timeout(None).map_err(HandshakeError::Io)?;
    Ok(())
}

/// `OK <decimal>`.
fn is_ok(line: &[u8]) -> bool {
    line.strip_prefix(b"OK ")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_lines() {
        assert!(is_ok(b"OK 1073741824"));
        assert!(is_ok(b"OK 0"));
        for bad in [&b"OK"[..], b"OK ", b"OK x", b"ok 5", b"NO", b"OK 5 6", b""] {
            assert!(!is_ok(bad), "{}", lossy(bad));
        }
    }
}

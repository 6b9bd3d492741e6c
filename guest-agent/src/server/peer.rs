//! Who may connect over vsock: ttrpc's accept hook closes every connection whose peer
//! CID is not allowed (by default only the host, CID 2), before ttrpc reads a byte of it.
//! Other guest processes (and, with a VMM that routes guest-to-guest, other VMs) cannot
//! reach the agent.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use layerpass_protocols::ttrpc::security_extension::{
    AcceptHook, ConnectionData, HookError, HookOutput,
};
use rustix::net::{AddressFamily, SocketAddrAny, getpeername};

/// The accept hook of a vsock server.
#[derive(Debug, Clone)]
pub struct VsockPeers {
    allowed: Vec<u32>,
}

impl VsockPeers {
    /// Accepts peers whose CID is in `allowed`.
    pub fn new(allowed: Vec<u32>) -> Self {
        Self { allowed }
    }

    /// Whether a peer at `addr` may talk to the agent; the error says why not.
    pub fn check(&self, addr: Option<&SocketAddrAny>) -> Result<u32, String> {
        let Some(addr) = addr else {
            return Err("the peer has no address".into());
        };
        let cid = vsock_cid(addr)
            .ok_or_else(|| format!("the peer is no vsock peer ({:?})", addr.address_family()))?;
        if self.allowed.contains(&cid) {
            Ok(cid)
        } else {
            Err(format!(
                "vsock peer CID {cid} is not allowed (allowed: {:?})",
                self.allowed
            ))
        }
    }
}

/// `svm_cid` of a `sockaddr_vm` (`{ u16 family; u16 reserved; u32 port; u32 cid; … }`).
pub fn vsock_cid(addr: &SocketAddrAny) -> Option<u32> {
    const CID_OFFSET: usize = 8;
    if addr.address_family() != AddressFamily::VSOCK {
        return None;
    }
    let len = usize::try_from(addr.addr_len()).ok()?;
    if len < CID_OFFSET + 4 {
        return None;
    }
    // SAFETY: `as_ptr` points to the address storage, of which the first `addr_len`
    // bytes are initialised; we read 4 bytes at offset 8, inside that length (checked
    // above), unaligned.
    let cid = unsafe {
        addr.as_ptr()
            .cast::<u8>()
            .add(CID_OFFSET)
            .cast::<u32>()
            .read_unaligned()
    };
    Some(cid)
}

impl AcceptHook for VsockPeers {
    fn on_accept(&self, fd: RawFd) -> Result<HookOutput, HookError> {
        // SAFETY: ttrpc passes the accepted connection's fd, open for the whole call,
        // and keeps ownership; the borrow does not outlive the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let addr = getpeername(fd).map_err(|e| HookError::Io(io::Error::from(e)))?;
        match self.check(addr.as_ref()) {
            Ok(cid) => {
                tracing::debug!(cid, "vsock connection accepted");
                Ok(HookOutput {
                    data: ConnectionData::new(),
                    payload_transform: None,
                })
            }
            Err(why) => {
                tracing::warn!("vsock connection refused: {why}");
                Err(HookError::Rejected(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use rustix::net::addr::{SocketAddrLen, SocketAddrStorage};

    use super::*;

    /// A `sockaddr_vm` for `cid`, port 1027.
    fn vsock_addr(cid: u32) -> SocketAddrAny {
        let mut raw = [0u8; 16];
        raw[..2].copy_from_slice(&AddressFamily::VSOCK.as_raw().to_ne_bytes());
        raw[4..8].copy_from_slice(&1027u32.to_ne_bytes());
        raw[8..12].copy_from_slice(&cid.to_ne_bytes());
        let mut storage = std::mem::MaybeUninit::<SocketAddrStorage>::zeroed();
        // SAFETY: the storage is large enough for 16 bytes (it holds any address), and
        // `read` copies `len` initialised bytes from it.
        unsafe {
            std::ptr::copy_nonoverlapping(raw.as_ptr(), storage.as_mut_ptr().cast::<u8>(), 16);
            SocketAddrAny::read(storage.as_ptr(), SocketAddrLen::try_from(16).unwrap())
        }
    }

    #[test]
    fn only_the_host_cid_is_accepted_by_default_others_when_configured() {
        let host_only = VsockPeers::new(vec![2]);
        assert_eq!(vsock_cid(&vsock_addr(3)), Some(3));
        assert_eq!(host_only.check(Some(&vsock_addr(2))), Ok(2));
        let err = host_only.check(Some(&vsock_addr(3))).unwrap_err();
        assert_eq!(err, "vsock peer CID 3 is not allowed (allowed: [2])");
        assert!(host_only.check(Some(&vsock_addr(1))).is_err());
        assert!(host_only.check(None).is_err());
        let configured = VsockPeers::new(vec![2, 5]);
        assert_eq!(configured.check(Some(&vsock_addr(5))), Ok(5));
    }

    #[test]
    fn a_peer_that_is_no_vsock_peer_is_rejected_by_the_hook() {
        let (a, _b) = UnixStream::pair().unwrap();
        let Err(err) = VsockPeers::new(vec![2]).on_accept(a.as_raw_fd()) else {
            panic!("a unix peer was accepted");
        };
        assert!(
            matches!(&err, HookError::Rejected(why) if why.contains("no vsock peer")),
            "{err}"
        );
    }
}

//! Kernel uevents over netlink (`NETLINK_KOBJECT_UEVENT`, group 1): no udev needed. The
//! agent only uses them as a signal to look at sysfs again.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, bind, recv, socket_with};

/// A kernel uevent: the `KEY=value` fields after the `action@devpath` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    /// `ACTION=` (`add`, `change`, `remove`, ...).
    pub action: String,
    /// `SUBSYSTEM=` (`block`, ...).
    pub subsystem: String,
    /// `DEVNAME=` (`vdb`, `vdb1`), if any.
    pub devname: Option<String>,
    /// `DEVTYPE=` (`disk`, `partition`), if any.
    pub devtype: Option<String>,
    /// `PARTNAME=`, if any.
    pub partname: Option<String>,
}

/// Parses one kernel uevent message (`add@/devices/...\0ACTION=add\0...`). Messages from
/// udev (`libudev` header) are ignored: `None`.
pub fn parse(msg: &[u8]) -> Option<Uevent> {
    let mut fields = msg.split(|b| *b == 0).filter(|f| !f.is_empty());
    let header = fields.next()?;
    if !header.contains(&b'@') {
        return None;
    }
    let mut ev = Uevent::default();
    for f in fields {
        let f = String::from_utf8_lossy(f);
        let Some((k, v)) = f.split_once('=') else {
            continue;
        };
        match k {
            "ACTION" => ev.action = v.to_owned(),
            "SUBSYSTEM" => ev.subsystem = v.to_owned(),
            "DEVNAME" => ev.devname = Some(v.to_owned()),
            "DEVTYPE" => ev.devtype = Some(v.to_owned()),
            "PARTNAME" => ev.partname = Some(v.to_owned()),
            _ => {}
        }
    }
    Some(ev)
}

/// A netlink socket subscribed to kernel uevents.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens and binds the socket (group 1: kernel events).
    pub fn open() -> io::Result<Self> {
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        bind(&fd, &SocketAddrNetlink::new(0, 1))?;
        Ok(Self { fd })
    }

    /// Waits up to `timeout` for events and returns those that arrived (possibly none).
    pub fn wait(&self, timeout: Duration) -> io::Result<Vec<Uevent>> {
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let mut events = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match recv(&self.fd, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => events.extend(parse(&buf[..n.min(buf.len())])),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => break,
                // Events were dropped: the caller rescans sysfs anyway.
                Err(rustix::io::Errno::NOBUFS) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_partition_add() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb/vdb1\0ACTION=add\0\
DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb/vdb1\0SUBSYSTEM=block\0MAJOR=254\0\
MINOR=17\0DEVNAME=vdb1\0DEVTYPE=partition\0PARTN=1\0PARTNAME=lp-0123\0SEQNUM=1234\0";
        let ev = parse(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.subsystem, "block");
        assert_eq!(ev.devname.as_deref(), Some("vdb1"));
        assert_eq!(ev.devtype.as_deref(), Some("partition"));
        assert_eq!(ev.partname.as_deref(), Some("lp-0123"));
    }

    #[test]
    fn ignores_udev_messages() {
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse(b""), None);
    }
}

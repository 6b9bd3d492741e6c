//! One frontend of the engine harness: the vhost crate's `Frontend` on a disk's socket, guest
//! RAM in a memfd, and what the harness predicts the two ends of the connection hold.
//!
//! Guest RAM is [`RAM_PAGES`] pages at guest address [`RAM_BASE`], byte `gpa - RAM_BASE` of
//! one memfd, mapped once in the harness. Every memory region the frontend sends is a window
//! of that file at the same offset (so overlapping regions would map the same bytes, and a
//! region may reach past the end of the file), announced at the frontend address
//! `va_base + gpa - RAM_BASE`. The harness writes rings and requests through its own mapping.
//!
//! Every message is answered synchronously when REPLY_ACK was negotiated (the frontend sets
//! NEED_REPLY on all of them): then the harness compares the backend's answer with its
//! prediction. A message that gets no answer within [`REPLY_TIMEOUT`] is a violation (the
//! control thread is wedged); so is a connection the backend drops after a well-formed
//! message.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Error as ProtoError, Frontend};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::super::HarnessError;
use super::EngineViolation;
pub use super::regions::{Region, covered, table_ok};
use super::vrings::QueueState;

/// Guest address of guest RAM.
pub const RAM_BASE: u64 = 0x10_0000;
pub const PAGE: u64 = 0x1000;
/// Pages of guest RAM (the memfd's size).
pub const RAM_PAGES: u64 = 64;
pub const RAM_LEN: u64 = RAM_PAGES * PAGE;
/// Pages past guest RAM a region or a ring address may reach.
pub const PAST_RAM_PAGES: u64 = 8;
/// The name of every memfd of the harness (`/proc/self/maps` and `fd/` show it).
pub const MEMFD_NAME: &str = "layerpass-engine-fuzz";
/// Longest wait for a reply from the control thread.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Queue indices the frontend may use: one past the largest disk's queues.
pub const FRONTEND_QUEUES: usize = 2;

/// What the harness knows of the disk behind a socket.
#[derive(Debug, Clone, Copy)]
pub struct DiskInfo {
    /// The virtio features the backend offers.
    pub offered: u64,
    pub queues: usize,
    /// In 512-byte sectors.
    pub capacity: u64,
}

/// The protocol state of both ends, as predicted.
#[derive(Debug, Default)]
pub struct Sides {
    /// The frontend's copy of the offered features (set by GET_FEATURES; the backend's
    /// message handler keeps the same).
    pub fe_features: u64,
    /// What the frontend believes acked: the last SET_FEATURES masked by `fe_features`.
    pub fe_acked: u64,
    /// The last SET_PROTOCOL_FEATURES, as both ends recorded it.
    pub protocol: u64,
    /// The features the backend's connection accepted.
    pub conn_acked: u64,
    /// Queue indices the frontend lets through (GET_QUEUE_NUM lowers it).
    pub fe_queues: usize,
    pub owned: bool,
}

impl Sides {
    /// Whether every message is acknowledged.
    pub fn reply_ack(&self) -> bool {
        self.fe_features
            & vhost::vhost_user::message::VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            != 0
            && self.protocol & VhostUserProtocolFeatures::REPLY_ACK.bits() != 0
    }

    pub fn has_protocol(&self, f: VhostUserProtocolFeatures) -> bool {
        self.protocol & f.bits() != 0
    }
}

/// The answer to one message.
#[derive(Debug)]
pub enum Answer<T> {
    /// Accepted, or not acknowledged (no REPLY_ACK).
    Done(T),
    /// The backend acknowledged a failure.
    Refused,
    /// The connection is gone.
    Closed,
}

/// One frontend.
pub struct Guest {
    pub frontend: Frontend,
    /// A second handle on the frontend's socket (for garbage).
    socket: UnixStream,
    /// Guest RAM as the harness maps it.
    pub ram: GuestMemoryMmap<()>,
    memfd: File,
    va_base: u64,
    pub disk: DiskInfo,
    pub sides: Sides,
    /// The memory table as the harness predicts the backend holds it.
    pub regions: Vec<Region>,
    pub queues: [QueueState; FRONTEND_QUEUES],
    /// The connection is gone (or out of step): the guest is dropped.
    pub dead: bool,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("disk", &self.disk)
            .field("sides", &self.sides)
            .field("regions", &self.regions)
            .field("queues", &self.queues)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// Connects to `socket`. A refused connection is a violation: the engine keeps every
    /// socket listening.
    pub fn connect(socket: &Path, disk: DiskInfo) -> Result<Self, HarnessError> {
        let memfd = File::from(
            rustix::fs::memfd_create(MEMFD_NAME, rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| HarnessError::Memory(e.to_string()))?,
        );
        memfd
            .set_len(RAM_LEN)
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        let file = memfd
            .try_clone()
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        let ram = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(RAM_BASE),
            RAM_LEN as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(|e| HarnessError::Memory(e.to_string()))?;
        let va_base = ram
            .get_host_address(GuestAddress(RAM_BASE))
            .map_err(|e| HarnessError::Memory(e.to_string()))? as u64;
        let stream = UnixStream::connect(socket)
            .and_then(|s| {
                s.set_read_timeout(Some(REPLY_TIMEOUT))?;
                s.set_write_timeout(Some(REPLY_TIMEOUT))?;
                Ok(s)
            })
            .map_err(|source| EngineViolation::Connect {
                socket: socket.to_owned(),
                source,
            })?;
        let mine = stream
            .try_clone()
            .map_err(|e| HarnessError::Frontend(format!("cannot duplicate the socket: {e}")))?;
        let frontend = Frontend::from_stream(stream, FRONTEND_QUEUES as u64);
        frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        Ok(Self {
            frontend,
            socket: mine,
            ram,
            memfd,
            va_base,
            disk,
            sides: Sides {
                fe_queues: FRONTEND_QUEUES,
                ..Sides::default()
            },
            regions: Vec::new(),
            queues: std::array::from_fn(|_| QueueState::new()),
            dead: false,
        })
    }

    /// The frontend address of guest address `gpa` (also past guest RAM: only a number).
    pub fn va(&self, gpa: u64) -> u64 {
        self.va_base.wrapping_add(gpa.wrapping_sub(RAM_BASE))
    }

    /// The guest address the backend translates frontend address `va` to, if a region
    /// holds it.
    pub fn translate(&self, va: u64) -> Option<u64> {
        self.regions
            .iter()
            .find(|r| va >= self.va(r.gpa) && va - self.va(r.gpa) < r.size)
            .map(|r| va - self.va(r.gpa) + r.gpa)
    }

    /// The region message for `r`.
    pub fn region_info(&self, r: Region) -> vhost::VhostUserMemoryRegionInfo {
        use std::os::fd::AsRawFd;
        vhost::VhostUserMemoryRegionInfo {
            guest_phys_addr: r.gpa,
            memory_size: r.size,
            userspace_addr: self.va(r.gpa),
            mmap_offset: r.gpa - RAM_BASE,
            mmap_handle: self.memfd.as_raw_fd(),
        }
    }

    /// Classifies the result of a message. `drops`: the backend is predicted to end the
    /// connection on it. A connection that ends is marked dead.
    pub fn answer<T>(
        &mut self,
        what: &'static str,
        drops: bool,
        r: vhost::Result<T>,
    ) -> Result<Answer<T>, HarnessError> {
        let e = match r {
            Ok(v) if !drops => return Ok(Answer::Done(v)),
            Ok(_) => {
                self.dead = true;
                return Ok(Answer::Closed);
            }
            Err(vhost::Error::VhostUserProtocol(e)) => e,
            Err(e) => return Err(HarnessError::Frontend(format!("{what}: {e}"))),
        };
        match e {
            ProtoError::BackendInternalError if !drops => Ok(Answer::Refused),
            ProtoError::SocketRetry(_) if !drops => Err(EngineViolation::NoReply { what }.into()),
            ProtoError::InvalidMessage if !drops => Err(EngineViolation::BadReply { what }.into()),
            ProtoError::InvalidParam
            | ProtoError::InactiveFeature(_)
            | ProtoError::InactiveOperation(_) => {
                Err(HarnessError::Frontend(format!("{what}: {e}")))
            }
            _ if drops => {
                self.dead = true;
                Ok(Answer::Closed)
            }
            _ => Err(EngineViolation::Dropped { what }.into()),
        }
    }

    /// Compares an answer with the prediction when the backend acknowledges messages.
    /// Returns whether the message took effect (the answer if there was one, else the
    /// prediction).
    pub fn took<T>(
        &self,
        what: &'static str,
        predicted: bool,
        a: &Answer<T>,
    ) -> Result<bool, HarnessError> {
        let observed = match a {
            Answer::Done(_) if self.sides.reply_ack() => true,
            Answer::Refused => false,
            Answer::Done(_) => return Ok(predicted),
            Answer::Closed => return Ok(false),
        };
        if observed == predicted {
            Ok(observed)
        } else {
            Err(EngineViolation::Acceptance {
                what,
                accepted: observed,
            }
            .into())
        }
    }

    /// The connection's socket, for bytes the frontend would never send; the guest is then
    /// dropped (the frontend is out of step).
    pub fn into_socket(self) -> UnixStream {
        self.socket
    }
}

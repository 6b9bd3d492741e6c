//! Whether the running kernel can mount a layer's EROFS, decided from the layer's verified
//! superblock before any mount is attempted (pure functions; the agent reads the bytes).
//!
//! Two EROFS features of index layers (an EROFS index over an uncompressed tar) need kernels
//! newer than some guests run:
//!
//! - blocks smaller than the page (`--tar=i` forces 512-byte blocks): Linux 6.4, backported
//!   to 6.1.113;
//! - a device table with extra devices mounted as one flat device (containerd's tar-index
//!   blobs, `[index][tar]` on one disk, no `device=` option): Linux 6.4 ("flatdev"); 6.1
//!   refuses the mount.
//!
//! The superblock comes from the dm-verity device, so with verity its bytes are the ones the
//! root hash names; without verity (a non-confidential plan) they are the host's: parsing is
//! bounded and never panics.

use std::fmt;

/// Byte offset of the EROFS superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Bytes of the superblock the agent reads.
pub const SUPERBLOCK_LEN: usize = 128;
/// `EROFS_SUPER_MAGIC_V1`.
pub const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
/// `EROFS_FEATURE_INCOMPAT_DEVICE_TABLE`: `extra_devices` is meaningful only with it (the
/// bit is shared with `COMPR_HEAD2`, as in the kernel).
pub const INCOMPAT_DEVICE_TABLE: u32 = 0x0000_0008;
/// Smallest EROFS block (`blkszbits` 9).
pub const MIN_BLKSZBITS: u8 = 9;
/// Largest EROFS block a guest maps: the page (4096 bytes on the guests we boot).
pub const MAX_BLKSZBITS: u8 = 12;

/// The superblock fields the kernel-version check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// log2 of the block size.
    pub blkszbits: u8,
    /// Incompatible feature bits.
    pub feature_incompat: u32,
    /// Devices besides the primary one (0 without [`INCOMPAT_DEVICE_TABLE`]).
    pub extra_devices: u16,
    /// Where the device table starts, in 128-byte slots.
    pub devt_slotoff: u16,
}

/// Why the bytes at [`SUPERBLOCK_OFFSET`] are not an EROFS superblock this guest can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// Fewer bytes than a superblock.
    #[error("{len} bytes are too few for an EROFS superblock ({SUPERBLOCK_LEN})")]
    Short {
        /// Bytes given.
        len: usize,
    },
    /// Not EROFS.
    #[error("magic {found:#010x} at byte {SUPERBLOCK_OFFSET} is not EROFS's {EROFS_MAGIC:#010x}")]
    Magic {
        /// The magic found.
        found: u32,
    },
    /// A block size no guest kernel mounts.
    #[error(
        "EROFS blkszbits {blkszbits} is outside {MIN_BLKSZBITS}..={MAX_BLKSZBITS} \
         (512 to 4096-byte blocks)"
    )]
    BlockSize {
        /// The superblock's `blkszbits`.
        blkszbits: u8,
    },
}

fn le16(b: &[u8], at: usize) -> u16 {
    let mut v = [0; 2];
    if let Some(s) = b.get(at..at + 2) {
        v.copy_from_slice(s);
    }
    u16::from_le_bytes(v)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

impl Superblock {
    /// Parses `struct erofs_super_block` from `bytes` (read at [`SUPERBLOCK_OFFSET`]).
    ///
    /// # Errors
    /// [`SuperblockError`] when the bytes are short, not EROFS or have a block size no guest
    /// mounts.
    pub fn parse(bytes: &[u8]) -> Result<Self, SuperblockError> {
        if bytes.len() < SUPERBLOCK_LEN {
            return Err(SuperblockError::Short { len: bytes.len() });
        }
        let magic = le32(bytes, 0);
        if magic != EROFS_MAGIC {
            return Err(SuperblockError::Magic { found: magic });
        }
        let blkszbits = bytes[12];
        if !(MIN_BLKSZBITS..=MAX_BLKSZBITS).contains(&blkszbits) {
            return Err(SuperblockError::BlockSize { blkszbits });
        }
        let feature_incompat = le32(bytes, 80);
        let extra_devices = if feature_incompat & INCOMPAT_DEVICE_TABLE != 0 {
            le16(bytes, 86)
        } else {
            0
        };
        Ok(Self {
            blkszbits,
            feature_incompat,
            extra_devices,
            devt_slotoff: le16(bytes, 88),
        })
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u32 {
        1 << self.blkszbits
    }
}

/// A kernel version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch level (the stable release, `y` of `6.1.y`).
    pub patch: u32,
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Parses a number of at most 9 digits at the start of `s`; the rest follows.
fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 || end > 9 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

impl KernelVersion {
    /// Parses `M.m[.p]` at the start of `s` (`6.1.0-28-amd64`, `6.12.48+deb13-amd64`,
    /// `6.4`); `None` when it does not start so.
    pub fn parse(s: &str) -> Option<Self> {
        let (major, rest) = number(s)?;
        let (minor, rest) = number(rest.strip_prefix('.')?)?;
        let patch = rest
            .strip_prefix('.')
            .and_then(number)
            .map_or(0, |(p, _)| p);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// The running kernel's version from `uname -r` (`release`) and `uname -v` (`version`).
    /// Debian keeps the stable patch level out of the release (`6.1.0-28-amd64`) and names
    /// it in the version (`#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)`); the
    /// version's is used when its `major.minor` is the release's.
    pub fn running(release: &str, version: &str) -> Option<Self> {
        let from_release = Self::parse(release)?;
        let debian = version
            .split_once("Debian ")
            .and_then(|(_, v)| Self::parse(v))
            .filter(|v| (v.major, v.minor) == (from_release.major, from_release.minor));
        Some(debian.map_or(from_release, |d| from_release.max(d)))
    }

    const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

/// The first kernel with sub-page EROFS blocks and flat device tables (flatdev).
const LINUX_6_4: KernelVersion = KernelVersion::new(6, 4, 0);
/// The 6.1 stable release with sub-page EROFS blocks backported.
const LINUX_6_1_113: KernelVersion = KernelVersion::new(6, 1, 113);

/// A kernel feature a layer's EROFS needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Blocks smaller than the page: 6.1.113 or a later 6.1, or 6.4 and later.
    SubPageBlocks {
        /// The EROFS block size.
        block_size: u32,
    },
    /// A device table mounted as one flat device (no `device=`): 6.4 and later.
    FlatDeviceTable {
        /// Devices besides the primary one.
        extra_devices: u16,
    },
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SubPageBlocks { block_size } => write!(
                f,
                "{block_size}-byte EROFS blocks (smaller than the page) need Linux \
                 {LINUX_6_1_113} or a later 6.1.y, or Linux 6.4 or later"
            ),
            Self::FlatDeviceTable { extra_devices } => write!(
                f,
                "an EROFS device table with {extra_devices} extra device(s) on one flat disk \
                 (containerd's tar index, [index][tar]) needs Linux 6.4 or later (flatdev)"
            ),
        }
    }
}

impl Requirement {
    /// Whether `kernel` has the feature.
    pub fn met_by(self, kernel: KernelVersion) -> bool {
        match self {
            Self::SubPageBlocks { .. } => {
                kernel >= LINUX_6_4
                    || ((kernel.major, kernel.minor) == (6, 1) && kernel >= LINUX_6_1_113)
            }
            Self::FlatDeviceTable { .. } => kernel >= LINUX_6_4,
        }
    }
}

/// What the superblock needs of the kernel, in the order they are checked.
pub fn requirements(sb: &Superblock) -> Vec<Requirement> {
    let mut needs = Vec::new();
    if sb.blkszbits < MAX_BLKSZBITS {
        needs.push(Requirement::SubPageBlocks {
            block_size: sb.block_size(),
        });
    }
    if sb.extra_devices > 0 {
        needs.push(Requirement::FlatDeviceTable {
            extra_devices: sb.extra_devices,
        });
    }
    needs
}

/// The running kernel cannot mount the layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{requirement}; this guest runs Linux {release} ({version})")]
pub struct Unsupported {
    /// What is missing.
    pub requirement: Requirement,
    /// `uname -r`.
    pub release: String,
    /// The version parsed from the release (and Debian's `uname -v`).
    pub version: KernelVersion,
}

/// Checks the superblock's requirements against the running kernel (`uname -r` as
/// `release`, `version` parsed by [`KernelVersion::running`]).
///
/// # Errors
/// [`Unsupported`] naming the first requirement the kernel does not meet.
pub fn check(sb: &Superblock, release: &str, version: KernelVersion) -> Result<(), Unsupported> {
    match requirements(sb).into_iter().find(|r| !r.met_by(version)) {
        Some(requirement) => Err(Unsupported {
            requirement,
            release: release.to_owned(),
            version,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;

//! The encrypted upper: the scratch disk under dm-integrity and AEAD dm-crypt, with a key
//! made in the guest that never leaves the agent's memory and the kernel, formatted ext2
//! at every mount (the content is ephemeral).
//!
//! The sequence (the kernel's dm-integrity documentation, as libcryptsetup does it):
//! 1. zero the first 4096 bytes of the disk (dm-integrity's superblock);
//! 2. load an `integrity` table of one 4096-byte block on a temporary device: the kernel
//!    sees the zeroed superblock and formats the disk;
//! 3. read `provided_data_sectors` from the device's status (`<mismatches> <provided> -`)
//!    and remove the temporary device;
//! 4. load `integrity` with that length, then `crypt` over it with `capi:aegis128-random`
//!    and `integrity:32:aead` (16-byte random IV + 16-byte tag per 4096-byte sector);
//! 5. zero the first block of every ext2 block group on the crypt device (the blocks
//!    `mke2fs` writes in part, so reads them first: [`mkfs_partial_blocks`]), then
//!    `mke2fs` on it.
//!
//! Why AEAD (AEGIS-128 with random IVs) rather than HMAC in dm-integrity under
//! aes-xts: one primitive authenticates each sector together with its sector number, so
//! changed and moved sectors both fail, and dm-integrity needs neither its own hash key nor
//! `journal_mac`/`fix_hmac`. The integrity device runs in direct mode (`D`, no journal): a
//! crash can leave a sector and its tag out of step, which only matters for content that
//! outlives a mount, and this content never does.

use std::io;
use std::path::PathBuf;

use layerpass_protocols::status::Kind;
use zeroize::{Zeroize, Zeroizing};

use super::Agent;
use crate::error::{AgentError, Step};
use crate::kernel::{BlockDevice, DevNum, DmTarget, MountSpec};
use crate::plan::DiskRef;
use crate::rollback::{Undo, UndoStack};
use crate::verity::DM_NAME_PREFIX;

/// The dm-crypt cipher: AEGIS-128 through the kernel crypto API, random IV per sector.
pub const CIPHER: &str = "capi:aegis128-random";
/// Key bytes of AEGIS-128.
pub const KEY_BYTES: usize = 16;
/// Tag bytes per sector dm-integrity keeps for dm-crypt: the 16-byte IV and 16-byte tag.
pub const TAG_BYTES: u32 = 32;
/// Sector size of both targets.
pub const SECTOR_BYTES: u64 = 4096;
/// Smallest scratch disk for an encrypted upper (room for the tags and an ext2).
pub const MIN_DISK_BYTES: u64 = 16 << 20;
/// Filesystem the upper is mounted as (the ext4 driver mounts ext2).
pub const FS_TYPE: &str = "ext4";

/// The device-mapper names of the encrypted upper on the disk `dev`: its crypt device (the
/// one mounted) and its integrity device. One upper per disk, so the disk names them.
pub fn dm_names(dev: DevNum) -> UpperDmNames {
    let base = format!("{DM_NAME_PREFIX}up-{}-{}", dev.major, dev.minor);
    UpperDmNames {
        crypt: format!("{base}-crypt"),
        integrity: format!("{base}-integrity"),
        format: format!("{base}-format"),
    }
}

/// See [`dm_names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperDmNames {
    pub crypt: String,
    pub integrity: String,
    /// The temporary device that formats the integrity superblock.
    pub format: String,
}

/// Whether `name` is a name [`dm_names`] makes (the state loader accepts only these for an
/// upper's devices).
pub fn is_upper_dm_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(DM_NAME_PREFIX)
        .and_then(|r| r.strip_prefix("up-"))
    else {
        return false;
    };
    let Some((numbers, suffix)) = rest.rsplit_once('-') else {
        return false;
    };
    let Some((major, minor)) = numbers.split_once('-') else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(suffix, "crypt" | "integrity") && number(major) && number(minor)
}

/// The `integrity` table: `length` sectors of `dev`, tags for dm-crypt, direct mode.
pub fn integrity_table(dev: DevNum, length: u64) -> DmTarget {
    DmTarget {
        start: 0,
        length,
        target_type: "integrity".into(),
        params: format!("{dev} 0 {TAG_BYTES} D 1 block_size:{SECTOR_BYTES}"),
    }
}

/// A table line that holds a key: its parameters are zeroed when it is dropped.
#[derive(Debug)]
pub struct SecretTable(pub DmTarget);

impl Drop for SecretTable {
    fn drop(&mut self) {
        self.0.params.zeroize();
    }
}

/// The `crypt` table over the integrity device `dev`, holding `key` in hex.
pub fn crypt_table(dev: DevNum, length: u64, key: &[u8]) -> SecretTable {
    let key_hex = Zeroizing::new(hex::encode(key));
    SecretTable(DmTarget {
        start: 0,
        length,
        target_type: "crypt".into(),
        params: format!(
            "{CIPHER} {} 0 {dev} 0 2 integrity:{TAG_BYTES}:aead sector_size:{SECTOR_BYTES}",
            key_hex.as_str()
        ),
    })
}

/// Blocks of an ext2 block group with 4096-byte blocks (`8 * block size`, the default of
/// busybox's and e2fsprogs' `mke2fs`).
pub const EXT2_BLOCKS_PER_GROUP: u64 = 8 * SECTOR_BYTES;

/// Byte offsets of the blocks `mke2fs` writes only in part on a device of `sectors`
/// 512-byte sectors: the first block of every block group, where the 1024-byte primary
/// superblock (at byte 1024) and its backups go. A partial write through the page cache
/// reads its block first; a block never written has no valid tag and reads as EIO, so
/// these are written whole with zeros first. Every other block `mke2fs` writes whole.
pub fn mkfs_partial_blocks(sectors: u64) -> Vec<u64> {
    let blocks = sectors / (SECTOR_BYTES / 512);
    let group_bytes = EXT2_BLOCKS_PER_GROUP * SECTOR_BYTES;
    (0..blocks.div_ceil(EXT2_BLOCKS_PER_GROUP))
        .map(|g| g * group_bytes)
        .collect()
}

/// `provided_data_sectors` from an integrity device's status line.
pub fn provided_sectors(status: &str) -> Option<u64> {
    let mut fields = status.split_whitespace();
    let _mismatches: u64 = fields.next()?.parse().ok()?;
    let provided: u64 = fields.next()?.parse().ok()?;
    (provided > 0 && provided.is_multiple_of(SECTOR_BYTES / 512)).then_some(provided)
}

/// A fresh key from the kernel's random source.
fn fresh_key() -> io::Result<Zeroizing<[u8; KEY_BYTES]>> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    let mut filled = 0;
    while filled < KEY_BYTES {
        match rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(key)
}

/// What [`Agent::prepare_encrypted_upper`] made.
#[derive(Debug)]
pub(super) struct EncryptedUpper {
    /// How to mount the filesystem.
    pub(super) spec: MountSpec,
    /// The crypt device's node.
    pub(super) node: PathBuf,
    /// Device-mapper devices to remove at unmount, in order (crypt, then integrity).
    pub(super) dm_devices: Vec<String>,
}

impl Agent {
    /// Sets up the encrypted upper on `disk` for `container`: integrity and crypt devices,
    /// a node for the crypt device and an ext2 on it. Every step is recorded in `undo`.
    pub(super) fn prepare_encrypted_upper(
        &self,
        disk: &DiskRef,
        container: &str,
        undo: &mut UndoStack,
    ) -> Result<EncryptedUpper, AgentError> {
        let dev = self.find_disk(disk, Step::Upper)?;
        let bytes = dev.sectors.saturating_mul(512);
        if bytes < MIN_DISK_BYTES {
            return Err(AgentError::new(
                Kind::FailedPrecondition,
                Step::Upper,
                format!(
                    "encrypted upper of {container}: {disk} ({}) has {bytes} bytes, at least \
                     {MIN_DISK_BYTES} are needed",
                    dev.path.display()
                ),
            ));
        }
        let names = dm_names(dev.dev);
        let provided = self.format_integrity(&dev, &names)?;

        let integrity =
            self.create_writable(&names.integrity, &integrity_table(dev.dev, provided), undo)?;
        let key = fresh_key()
            .map_err(|e| AgentError::io(Step::Upper, "reading a key from getrandom", e))?;
        let table = crypt_table(integrity, provided, key.as_slice());
        drop(key);
        let crypt = self.create_writable(&names.crypt, &table.0, undo)?;
        drop(table);

        let node = self.kernel.dm_node_path(&names.crypt);
        let created = self.kernel.make_block_node(&node, crypt).map_err(|e| {
            AgentError::io(
                Step::Upper,
                format!("creating node {} ({crypt})", node.display()),
                e,
            )
        })?;
        if created {
            undo.push(Undo::RemoveNode(node.clone()));
        }
        let blocks = mkfs_partial_blocks(provided);
        self.kernel.zero_blocks(&node, &blocks).map_err(|e| {
            AgentError::io(
                Step::Upper,
                format!("zeroing {} blocks of {}", blocks.len(), node.display()),
                e,
            )
        })?;
        self.kernel.make_ext2(&node).map_err(|e| {
            AgentError::io(Step::Upper, format!("formatting {}", node.display()), e)
        })?;
        tracing::info!(
            container,
            disk = %disk,
            device = %node.display(),
            data_sectors = provided,
            "encrypted upper ready (dm-integrity + {CIPHER})"
        );
        Ok(EncryptedUpper {
            spec: MountSpec::Disk {
                source: node.clone(),
                fs_type: FS_TYPE.into(),
            },
            node,
            dm_devices: vec![names.crypt, names.integrity],
        })
    }

    /// Steps 1–3: zero the superblock, let a one-block integrity device format it, read
    /// the data size, remove the device again (also when a step fails).
    fn format_integrity(&self, dev: &BlockDevice, names: &UpperDmNames) -> Result<u64, AgentError> {
        let io_err = |what: String| move |e: io::Error| AgentError::io(Step::Upper, what, e);
        self.kernel
            .zero_blocks(&dev.path, &[0])
            .map_err(io_err(format!(
                "zeroing the start of {}",
                dev.path.display()
            )))?;
        let mut undo = UndoStack::default();
        let result = self
            .create_writable(
                &names.format,
                &integrity_table(dev.dev, SECTOR_BYTES / 512),
                &mut undo,
            )
            .and_then(|_| {
                let status = self
                    .kernel
                    .dm_status(&names.format)
                    .map_err(io_err(format!("reading the status of {}", names.format)))?
                    .unwrap_or_default();
                provided_sectors(&status).ok_or_else(|| {
                    AgentError::new(
                        Kind::Internal,
                        Step::Upper,
                        format!(
                            "dm-integrity on {} reports no usable size (status {status:?})",
                            dev.path.display()
                        ),
                    )
                })
            });
        // The temporary device goes in every case.
        undo.run(self.kernel.as_ref());
        result
    }

    /// Creates the writable device `name`, loads `table` and resumes it; returns its
    /// device number.
    fn create_writable(
        &self,
        name: &str,
        table: &DmTarget,
        undo: &mut UndoStack,
    ) -> Result<DevNum, AgentError> {
        let dm = |what: &str| {
            let what = format!("{what} {name}");
            move |e: io::Error| AgentError::io(Step::Upper, what, e)
        };
        let dev = self
            .kernel
            .dm_create_writable(name, &format!("LAYERPASS-UPPER-{name}"))
            .map_err(dm("creating device"))?;
        undo.push(Undo::DmRemove(name.to_owned()));
        // The table is not in the message: a crypt table holds the key.
        self.kernel
            .dm_load_writable(name, std::slice::from_ref(table))
            .map_err(dm(&format!("loading the {} table into", table.target_type)))?;
        self.kernel.dm_resume(name).map_err(dm("resuming"))?;
        Ok(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: DevNum = DevNum {
        major: 254,
        minor: 16,
    };

    #[test]
    fn names_are_per_disk_and_recognised() {
        let n = dm_names(DISK);
        assert_eq!(n.crypt, "lp-up-254-16-crypt");
        assert_eq!(n.integrity, "lp-up-254-16-integrity");
        assert!(is_upper_dm_name(&n.crypt) && is_upper_dm_name(&n.integrity));
        for bad in [
            "lp-up-254-16-format",
            "lp-up-254-crypt",
            "lp-up-x-16-crypt",
            "lp-0123456789abcdef0123456789abcdef",
            "up-254-16-crypt",
            "lp-up-254-16-crypt/..",
            "lp-up--16-crypt",
        ] {
            assert!(!is_upper_dm_name(bad), "{bad}");
        }
    }

    #[test]
    fn tables_match_cryptsetup_aead_layout() {
        let t = integrity_table(DISK, 8);
        assert_eq!(
            (t.length, t.target_type.as_str(), t.params.as_str()),
            (8, "integrity", "254:16 0 32 D 1 block_size:4096")
        );
        let c = crypt_table(
            DevNum {
                major: 253,
                minor: 3,
            },
            1024,
            &[0xab; KEY_BYTES],
        );
        assert_eq!(
            c.0.params,
            format!(
                "capi:aegis128-random {} 0 253:3 0 2 integrity:32:aead sector_size:4096",
                "ab".repeat(KEY_BYTES)
            )
        );
    }

    #[test]
    fn partial_blocks_are_the_first_of_each_group() {
        assert_eq!(mkfs_partial_blocks(8), vec![0]);
        let group = 32768 * 4096;
        // 160 MiB: two groups (the second partial).
        assert_eq!(mkfs_partial_blocks(160 << 11), vec![0, group]);
        assert_eq!(mkfs_partial_blocks(256 << 11), vec![0, group]);
        assert_eq!(
            mkfs_partial_blocks((256 << 11) + 8),
            vec![0, group, 2 * group]
        );
    }

    #[test]
    fn provided_sectors_reads_the_status_line() {
        assert_eq!(provided_sectors("0 30208 -"), Some(30208));
        assert_eq!(provided_sectors("3 30208 1024"), Some(30208));
        for bad in ["", "0", "0 0 -", "0 30207 -", "x 8 -", "V"] {
            assert_eq!(provided_sectors(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_fresh() {
        let (a, b) = (fresh_key().unwrap(), fresh_key().unwrap());
        assert_ne!(*a, *b);
        assert_ne!(*a, [0u8; KEY_BYTES]);
    }
}

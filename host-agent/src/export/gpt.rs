//! GUID partition tables, synthesised in memory: protective MBR, primary header and entries,
//! backup entries and header (UEFI 2.10 §5.3), for any logical block size.

use uuid::Uuid;

/// "Linux filesystem data".
pub const LINUX_FS_TYPE: Uuid = Uuid::from_u128(0x0fc6_3daf_8483_4772_8e79_3d69_d847_7de4);
const ENTRY_SIZE: u64 = 128;
const MIN_ENTRIES: u64 = 128;
const HEADER_SIZE: u32 = 92;
/// Longest partition name, in UTF-16 code units.
pub const MAX_NAME_UNITS: usize = 36;

/// One partition: blocks `first_lba..=last_lba`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Uuid,
    pub unique_guid: Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// Sizes of a table for `partitions` entries with `lba_size`-byte blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub lba_size: u64,
    pub entries: u64,
    /// Blocks taken by the entry array.
    pub entry_lbas: u64,
}

impl Layout {
    pub fn new(lba_size: u64, partitions: usize) -> Self {
        let per_lba = lba_size / ENTRY_SIZE;
        let entries = (partitions as u64).max(MIN_ENTRIES).div_ceil(per_lba) * per_lba;
        Self {
            lba_size,
            entries,
            entry_lbas: entries * ENTRY_SIZE / lba_size,
        }
    }

    /// First block a partition may use.
    pub fn first_usable(&self) -> u64 {
        2 + self.entry_lbas
    }

    /// Blocks the backup table takes at the end of the disk.
    pub fn backup_lbas(&self) -> u64 {
        self.entry_lbas + 1
    }
}

/// The bytes of a table: `primary` covers blocks `0..first_usable`, `backup` the last
/// `backup_lbas` blocks of a disk of `total_lbas` blocks.
#[derive(Debug, Clone)]
pub struct Table {
    pub primary: Vec<u8>,
    pub backup: Vec<u8>,
}

/// Builds the table. Partitions must lie inside the usable area, in order, not overlapping,
/// with names of at most [`MAX_NAME_UNITS`] UTF-16 units (checked by the caller).
pub fn build(layout: Layout, total_lbas: u64, disk_guid: Uuid, partitions: &[Partition]) -> Table {
    let lba = layout.lba_size as usize;
    let mut entries = vec![0u8; (layout.entries * ENTRY_SIZE) as usize];
    for (i, p) in partitions.iter().enumerate() {
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_bytes_le());
        e[16..32].copy_from_slice(&p.unique_guid.to_bytes_le());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        for (j, unit) in p.name.encode_utf16().take(MAX_NAME_UNITS).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let last_lba = total_lbas - 1;
    let backup_entries_lba = last_lba - layout.entry_lbas;
    let header = |my_lba: u64, alternate: u64, entries_lba: u64| {
        let mut h = vec![0u8; lba];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&layout.first_usable().to_le_bytes());
        h[48..56].copy_from_slice(&(backup_entries_lba - 1).to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        // entries <= u32::MAX for any disk this builds (checked by the caller's layer count).
        h[80..84].copy_from_slice(&(layout.entries as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };

    let mut primary = vec![0u8; (layout.first_usable() * layout.lba_size) as usize];
    // Protective MBR: one partition of type 0xEE covering the disk (capped at 2^32-1 blocks).
    let mbr = &mut primary[446..462];
    mbr[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    mbr[4] = 0xEE;
    mbr[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    mbr[8..12].copy_from_slice(&1u32.to_le_bytes());
    let mbr_size = u32::try_from(last_lba).unwrap_or(u32::MAX);
    mbr[12..16].copy_from_slice(&mbr_size.to_le_bytes());
    primary[510] = 0x55;
    primary[511] = 0xAA;
    primary[lba..2 * lba].copy_from_slice(&header(1, last_lba, 2));
    primary[2 * lba..].copy_from_slice(&entries);

    let mut backup = entries;
    backup.extend_from_slice(&header(last_lba, 1, backup_entries_lba));
    Table { primary, backup }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_grows_past_128_entries() {
        assert_eq!(
            Layout::new(512, 3),
            Layout {
                lba_size: 512,
                entries: 128,
                entry_lbas: 32
            }
        );
        assert_eq!(Layout::new(512, 3).first_usable(), 34);
        assert_eq!(Layout::new(4096, 3).entry_lbas, 4);
        assert_eq!(Layout::new(4096, 200).entries, 224);
    }

    #[test]
    fn headers_carry_valid_crcs() {
        let layout = Layout::new(512, 1);
        let parts = [Partition {
            type_guid: LINUX_FS_TYPE,
            unique_guid: Uuid::from_u128(1),
            first_lba: 2048,
            last_lba: 4095,
            name: "lp-0123".into(),
        }];
        let t = build(layout, 8192, Uuid::from_u128(2), &parts);
        assert_eq!(t.primary.len(), 34 * 512);
        assert_eq!(t.backup.len(), 33 * 512);
        let h = &t.primary[512..1024];
        assert_eq!(&h[0..8], b"EFI PART");
        let mut zeroed = h[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(crc32fast::hash(&zeroed).to_le_bytes(), h[16..20]);
        assert_eq!(crc32fast::hash(&t.primary[1024..]).to_le_bytes(), h[88..92]);
        // The backup header points back at the primary and at its own entries.
        let b = &t.backup[32 * 512..];
        assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), 8191);
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(b[72..80].try_into().unwrap()), 8191 - 32);
        // Name in UTF-16LE.
        assert_eq!(&t.primary[1024 + 56..1024 + 60], &[b'l', 0, b'p', 0]);
    }
}

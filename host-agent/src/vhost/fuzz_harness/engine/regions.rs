//! Memory regions as the harness sends them, and what the backend must make of them.

use super::guest::{RAM_BASE, RAM_LEN};

/// A memory region as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub gpa: u64,
    pub size: u64,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.gpa + self.size
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.gpa < other.end() && other.gpa < self.end()
    }

    /// Whether the backend can map it: inside the memfd.
    pub fn in_file(&self) -> bool {
        self.gpa >= RAM_BASE && self.end() <= RAM_BASE + RAM_LEN
    }
}

/// Whether every byte of `[start, +len)` lies in one of `regions`.
pub fn covered(regions: &[Region], start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    let mut at = start;
    while at < end {
        match regions.iter().find(|r| r.gpa <= at && at < r.end()) {
            Some(r) => at = r.end(),
            None => return false,
        }
    }
    true
}

/// Whether a table of `regions` is acceptable: each inside the file, none overlapping.
pub fn table_ok(regions: &[Region]) -> bool {
    regions.iter().all(Region::in_file)
        && regions
            .iter()
            .enumerate()
            .all(|(i, r)| regions[i + 1..].iter().all(|o| !r.overlaps(o)))
}

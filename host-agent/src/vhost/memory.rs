//! A connection's view of guest memory: the regions the frontend shared (SET_MEM_TABLE,
//! ADD_MEM_REG, REM_MEM_REG), mapped into this process, and the translation of the
//! frontend's own virtual addresses (what SET_VRING_ADDR carries) to guest-physical ones.
//!
//! The mapped regions sit behind a [`GuestMemoryAtomic`]: a queue worker loads the current
//! table once per batch, under its ring's lock. The connection changes the table only while
//! holding every ring's lock (`conn.rs`, `lock_all`), so a change waits for running batches
//! and no batch serves a request, published after the change was acknowledged, with the
//! table from before it (its buffers would be "outside guest memory": IOERR).
//!
//! A region must lie inside its file when the file is a regular one (a memfd, tmpfs or
//! hugetlbfs file, what VMMs share): a page of the mapping past the end of the file raises
//! SIGBUS when touched, which would end the whole process and every disk it serves. (A
//! frontend that shrinks the file after sharing it can still do that; QEMU does not.)

use std::fs::File;
use std::sync::Arc;

use vhost::vhost_user::message::VhostUserMemoryRegion;
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestRegionMmap};

use super::request::GuestMem;

/// Most regions a frontend may add (`GET_MAX_MEM_SLOTS`). QEMU caps its own count at 512 and
/// asks for the minimum of both; 509 is what QEMU's and rust-vmm's backends answer.
pub const MAX_MEM_SLOTS: u64 = 509;

/// Why a memory-table message was refused (the frontend gets a failed reply).
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("a memory region of {size} bytes at guest address {gpa:#x} cannot be mapped: {reason}")]
    Map { gpa: u64, size: u64, reason: String },
    #[error("the memory regions overlap or are empty: {0}")]
    Layout(String),
    #[error("no memory region at guest address {gpa:#x} of {size} bytes to remove")]
    NoSuchRegion { gpa: u64, size: u64 },
    #[error("more than {MAX_MEM_SLOTS} memory regions")]
    TooManyRegions,
    #[error("{count} file descriptors for {regions} memory regions")]
    FdCount { count: usize, regions: usize },
    #[error("frontend address {0:#x} lies in no shared memory region")]
    Unmapped(u64),
}

/// One region as the frontend sees it.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    frontend_addr: u64,
    size: u64,
    gpa: u64,
}

/// The shared memory of one connection.
#[derive(Debug)]
pub struct MemoryTable {
    atomic: GuestMemoryAtomic<GuestMem>,
    mappings: Vec<Mapping>,
}

impl Default for MemoryTable {
    fn default() -> Self {
        Self {
            atomic: GuestMemoryAtomic::new(GuestMem::new()),
            mappings: Vec::new(),
        }
    }
}

impl MemoryTable {
    /// The atomic the queue workers load from (shared, not copied).
    pub fn atomic(&self) -> GuestMemoryAtomic<GuestMem> {
        self.atomic.clone()
    }

    /// Regions currently mapped.
    pub fn regions(&self) -> usize {
        self.mappings.len()
    }

    /// SET_MEM_TABLE: replaces every region. The frontend may list them in any order.
    pub fn set(
        &mut self,
        regions: &[VhostUserMemoryRegion],
        files: Vec<File>,
    ) -> Result<(), MemoryError> {
        if files.len() != regions.len() {
            return Err(MemoryError::FdCount {
                count: files.len(),
                regions: regions.len(),
            });
        }
        if regions.len() as u64 > MAX_MEM_SLOTS {
            return Err(MemoryError::TooManyRegions);
        }
        // The guest memory collection wants its regions in address order (and refuses an
        // overlap, which is what it must refuse).
        let mut sorted: Vec<_> = regions.iter().zip(files).collect();
        sorted.sort_by_key(|(r, _)| r.guest_phys_addr);
        let mut mapped = Vec::with_capacity(regions.len());
        let mut mappings = Vec::with_capacity(regions.len());
        for (r, file) in sorted {
            mapped.push(Arc::new(map(r, file)?));
            mappings.push(Mapping {
                frontend_addr: r.user_addr,
                size: r.memory_size,
                gpa: r.guest_phys_addr,
            });
        }
        let mem = if mapped.is_empty() {
            GuestMem::new()
        } else {
            GuestMem::from_arc_regions(mapped).map_err(|e| MemoryError::Layout(e.to_string()))?
        };
        self.replace(mem);
        self.mappings = mappings;
        Ok(())
    }

    /// ADD_MEM_REG: one more region.
    pub fn add(&mut self, r: &VhostUserMemoryRegion, file: File) -> Result<(), MemoryError> {
        if self.mappings.len() as u64 >= MAX_MEM_SLOTS {
            return Err(MemoryError::TooManyRegions);
        }
        let region = Arc::new(map(r, file)?);
        let mem = self
            .atomic
            .memory()
            .insert_region(region)
            .map_err(|e| MemoryError::Layout(e.to_string()))?;
        self.replace(mem);
        self.mappings.push(Mapping {
            frontend_addr: r.user_addr,
            size: r.memory_size,
            gpa: r.guest_phys_addr,
        });
        Ok(())
    }

    /// REM_MEM_REG: the region at `gpa` of `size` bytes goes (unmapped once no batch uses it).
    pub fn remove(&mut self, gpa: u64, size: u64) -> Result<(), MemoryError> {
        let Some(at) = self
            .mappings
            .iter()
            .position(|m| m.gpa == gpa && m.size == size)
        else {
            return Err(MemoryError::NoSuchRegion { gpa, size });
        };
        let mem = if self.mappings.len() == 1 {
            GuestMem::new()
        } else {
            self.atomic
                .memory()
                .remove_region(GuestAddress(gpa), size)
                .map(|(mem, _)| mem)
                .map_err(|_| MemoryError::NoSuchRegion { gpa, size })?
        };
        self.replace(mem);
        self.mappings.swap_remove(at);
        Ok(())
    }

    /// The guest-physical address of the frontend's virtual address `addr`.
    pub fn to_gpa(&self, addr: u64) -> Result<u64, MemoryError> {
        self.mappings
            .iter()
            .find(|m| addr >= m.frontend_addr && addr - m.frontend_addr < m.size)
            .map(|m| addr - m.frontend_addr + m.gpa)
            .ok_or(MemoryError::Unmapped(addr))
    }

    fn replace(&self, mem: GuestMem) {
        // The lock only serialises writers (this connection's control thread); readers load
        // without it.
        match self.atomic.lock() {
            Ok(guard) => guard.replace(mem),
            Err(poisoned) => poisoned.into_inner().replace(mem),
        }
    }
}

fn map(r: &VhostUserMemoryRegion, file: File) -> Result<GuestRegionMmap<()>, MemoryError> {
    let fail = |reason: String| MemoryError::Map {
        gpa: r.guest_phys_addr,
        size: r.memory_size,
        reason,
    };
    if r.memory_size == 0 || usize::try_from(r.memory_size).is_err() {
        return Err(fail("bad size".into()));
    }
    let end = r
        .mmap_offset
        .checked_add(r.memory_size)
        .ok_or_else(|| fail("the offset and size overflow".into()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if meta.is_file() && meta.len() < end {
        return Err(fail(format!(
            "it ends at byte {end} of a file of {} bytes",
            meta.len()
        )));
    }
    let mmap = r.mmap_region::<()>(file).map_err(|e| fail(e.to_string()))?;
    GuestRegionMmap::new(mmap, GuestAddress(r.guest_phys_addr))
        .ok_or_else(|| fail("the region wraps the guest address space".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    fn memfd(size: u64) -> File {
        let f = tempfile::tempfile().expect("temp file");
        f.set_len(size).expect("size");
        f
    }

    fn region(gpa: u64, size: u64, va: u64) -> VhostUserMemoryRegion {
        VhostUserMemoryRegion::new(gpa, size, va, 0)
    }

    #[test]
    fn add_translate_remove() {
        let mut t = MemoryTable::default();
        t.set(
            &[region(0x10_0000, 0x1_0000, 0x7f00_0000)],
            vec![memfd(0x1_0000)],
        )
        .expect("set");
        assert_eq!(t.to_gpa(0x7f00_0010).expect("mapped"), 0x10_0010);
        assert!(t.to_gpa(0x7f01_0000).is_err(), "one past the end");
        t.add(&region(0x20_0000, 0x1000, 0x8000_0000), memfd(0x1000))
            .expect("add");
        assert_eq!(t.regions(), 2);
        let mem = t.atomic().memory();
        mem.write_obj(7u8, GuestAddress(0x20_0fff)).expect("write");
        // A batch holding the old table keeps the region mapped after it is removed.
        t.remove(0x20_0000, 0x1000).expect("remove");
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x20_0fff)).expect("read"),
            7
        );
        assert!(
            t.atomic()
                .memory()
                .find_region(GuestAddress(0x20_0000))
                .is_none()
        );
        assert!(matches!(
            t.remove(0x20_0000, 0x1000),
            Err(MemoryError::NoSuchRegion { .. })
        ));
        t.remove(0x10_0000, 0x1_0000).expect("last region");
        assert_eq!(t.atomic().memory().num_regions(), 0);
    }

    #[test]
    fn a_table_in_any_order_is_accepted() {
        let mut t = MemoryTable::default();
        t.set(
            &[
                region(0x20_0000, 0x1000, 0x8000_0000),
                region(0x10_0000, 0x1000, 0x7f00_0000),
            ],
            vec![memfd(0x1000), memfd(0x1000)],
        )
        .expect("two regions, the higher first");
        assert_eq!(t.to_gpa(0x8000_0010).expect("mapped"), 0x20_0010);
        assert_eq!(t.to_gpa(0x7f00_0010).expect("mapped"), 0x10_0010);
        let mem = t.atomic().memory();
        assert!(mem.find_region(GuestAddress(0x20_0000)).is_some());
        assert!(mem.find_region(GuestAddress(0x10_0000)).is_some());
        // Overlapping regions stay refused in any order.
        assert!(matches!(
            t.set(
                &[
                    region(0x10_1000, 0x2000, 0x8000_0000),
                    region(0x10_0000, 0x2000, 0x7f00_0000),
                ],
                vec![memfd(0x2000), memfd(0x2000)],
            ),
            Err(MemoryError::Layout(_))
        ));
    }

    #[test]
    fn a_region_past_the_end_of_its_file_is_refused() {
        let mut t = MemoryTable::default();
        // Touching the second page would be a SIGBUS.
        assert!(matches!(
            t.set(
                &[region(0x10_0000, 0x2000, 0x7f00_0000)],
                vec![memfd(0x1000)]
            ),
            Err(MemoryError::Map { .. })
        ));
        let at_offset = VhostUserMemoryRegion::new(0x10_0000, 0x1000, 0x7f00_0000, 0x1000);
        assert!(matches!(
            t.add(&at_offset, memfd(0x1000)),
            Err(MemoryError::Map { .. })
        ));
        assert_eq!(t.regions(), 0);
        // Exactly the file, at an offset: fine.
        t.add(&at_offset, memfd(0x2000)).expect("inside the file");
        assert_eq!(t.to_gpa(0x7f00_0fff).expect("mapped"), 0x10_0fff);
    }

    #[test]
    fn overlapping_regions_are_refused() {
        let mut t = MemoryTable::default();
        t.set(
            &[region(0x10_0000, 0x2000, 0x1000_0000)],
            vec![memfd(0x2000)],
        )
        .expect("set");
        assert!(matches!(
            t.add(&region(0x10_1000, 0x2000, 0x2000_0000), memfd(0x2000)),
            Err(MemoryError::Layout(_))
        ));
        assert_eq!(t.regions(), 1);
        assert!(matches!(
            t.set(&[region(0, 0x1000, 0)], vec![]),
            Err(MemoryError::FdCount { .. })
        ));
    }
}

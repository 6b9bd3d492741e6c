//! Verity in the same pass: every byte written to the image is also fed here, in block
//! order, and the dm-verity leaf digests are recorded as whole blocks complete
//! ([`LeafDigests`]), so the tree is built without reading the image again.

use crate::verity::{LeafDigests, VerityParams};

use super::error::ErofsError;
use super::format::BLOCK_SIZE;

#[derive(Debug)]
pub struct Recorder {
    leaves: LeafDigests,
    /// Bytes of the block being filled (fewer than a block).
    pending: Vec<u8>,
    /// Index of the next block to complete.
    next: u64,
}

impl Recorder {
    /// Records with containerd's parameters (sha256, 4096-byte blocks, 32 zero bytes of
    /// salt), starting at block `first`.
    pub fn new(first: u64) -> Result<Self, ErofsError> {
        Ok(Self {
            leaves: LeafDigests::new(VerityParams::containerd())?,
            pending: Vec::with_capacity(BLOCK_SIZE as usize),
            next: first,
        })
    }

    /// The image's next bytes, contiguous with the previous ones.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ErofsError> {
        let bs = BLOCK_SIZE as usize;
        if !self.pending.is_empty() {
            let take = (bs - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < bs {
                return Ok(());
            }
            self.leaves.record(self.next, &self.pending)?;
            self.pending.clear();
            self.next += 1;
        }
        let whole = bytes.len() / bs * bs;
        if whole > 0 {
            self.leaves.record(self.next, &bytes[..whole])?;
            self.next += (whole / bs) as u64;
        }
        self.pending.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    /// Where the next fed byte goes, in blocks (the stream must be at a block boundary).
    pub fn position(&self) -> Option<u64> {
        self.pending.is_empty().then_some(self.next)
    }

    /// Records block `index` again with its final content (block 0, zeroed blocks).
    pub fn rerecord(&mut self, index: u64, block: &[u8]) -> Result<(), ErofsError> {
        self.leaves.record(index, block)?;
        Ok(())
    }

    pub fn finish(self) -> LeafDigests {
        self.leaves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_size_give_the_digests_of_whole_blocks() {
        let data: Vec<u8> = (0..5 * 4096u32).map(|i| (i % 253) as u8).collect();
        let mut a = Recorder::new(0).unwrap();
        a.feed(&data).unwrap();
        let mut b = Recorder::new(0).unwrap();
        for piece in data.chunks(1000) {
            b.feed(piece).unwrap();
        }
        assert_eq!(b.position(), Some(5));
        let mut c = LeafDigests::new(VerityParams::containerd()).unwrap();
        c.record(0, &data).unwrap();
        assert_eq!(format!("{:?}", a.finish()), format!("{c:?}"));
        assert_eq!(format!("{:?}", b.finish()), format!("{c:?}"));
    }
}

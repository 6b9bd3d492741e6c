//! Verity in the same pass: every byte written to the image is also fed here, in block
//! order, and the dm-verity leaf digests are recorded as whole blocks complete
//! ([`LeafDigests`]), so the tree is built without reading the image again.

use std::sync::mpsc;
use std::thread;

use crate::verity::{LeafDigests, VerityError, VerityParams};

use super::error::ErofsError;
use super::format::BLOCK_SIZE;

/// Bytes of whole blocks handed to the hashing thread at a time.
const BATCH: usize = 4 << 20;
/// Batches in flight (bounds the memory the recorder holds).
const QUEUE: usize = 2;

type Job = (u64, Vec<u8>);

/// Feeds whole blocks to a hashing thread, so the writer's thread only copies them.
#[derive(Debug)]
pub struct Recorder {
    tx: Option<mpsc::SyncSender<Job>>,
    free: mpsc::Receiver<Vec<u8>>,
    worker: Option<thread::JoinHandle<Result<LeafDigests, VerityError>>>,
    /// Whole blocks not yet sent, starting at block `batch_first`.
    batch: Vec<u8>,
    batch_first: u64,
    /// Bytes of the block being filled (fewer than a block).
    pending: Vec<u8>,
    /// Index of the next block to complete.
    next: u64,
}

impl Recorder {
    /// Records with containerd's parameters (sha256, 4096-byte blocks, 32 zero bytes of
    /// salt), starting at block `first`.
    pub fn new(first: u64) -> Result<Self, ErofsError> {
        let mut leaves = LeafDigests::new(VerityParams::containerd())?;
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (free_tx, free) = mpsc::sync_channel::<Vec<u8>>(QUEUE + 1);
        let worker = thread::Builder::new()
            .name("verity-leaves".into())
            .spawn(move || {
                for (first, blocks) in rx {
                    leaves.record(first, &blocks)?;
                    let _ = free_tx.try_send(blocks);
                }
                Ok(leaves)
            })
            .map_err(|e| ErofsError::Io {
                op: "start the verity hashing thread for",
                path: "the image".into(),
                source: e,
            })?;
        Ok(Self {
            tx: Some(tx),
            free,
            worker: Some(worker),
            batch: Vec::with_capacity(BATCH),
            batch_first: first,
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
            let block = std::mem::take(&mut self.pending);
            self.push_blocks(&block)?;
            self.pending = block;
            self.pending.clear();
        }
        let whole = bytes.len() / bs * bs;
        let (blocks, rest) = bytes.split_at(whole);
        self.push_blocks(blocks)?;
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    /// Appends whole blocks (the next ones in order) to the batch, sending full batches.
    fn push_blocks(&mut self, mut blocks: &[u8]) -> Result<(), ErofsError> {
        while !blocks.is_empty() {
            let take = (BATCH - self.batch.len()).min(blocks.len());
            self.batch.extend_from_slice(&blocks[..take]);
            self.next += (take / BLOCK_SIZE as usize) as u64;
            blocks = &blocks[take..];
            if self.batch.len() >= BATCH {
                self.send_batch()?;
            }
        }
        Ok(())
    }

    fn send_batch(&mut self) -> Result<(), ErofsError> {
        if self.batch.is_empty() {
            self.batch_first = self.next;
            return Ok(());
        }
        let fresh = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let full = std::mem::replace(&mut self.batch, fresh);
        self.batch.clear();
        let first = self.batch_first;
        self.batch_first = self.next;
        self.send((first, full))
    }

    fn send(&mut self, job: Job) -> Result<(), ErofsError> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            self.finish().map(|_| ())
        }
    }

    /// Where the next fed byte goes, in blocks (the stream must be at a block boundary).
    pub fn position(&self) -> Option<u64> {
        self.pending.is_empty().then_some(self.next)
    }

    /// Records block `index` again with its final content (block 0, zeroed blocks).
    pub fn rerecord(&mut self, index: u64, block: &[u8]) -> Result<(), ErofsError> {
        self.send_batch()?;
        self.send((index, block.to_vec()))
    }

    /// Waits for the hashing thread and returns the digests.
    pub fn finish(&mut self) -> Result<LeafDigests, ErofsError> {
        self.send_batch()?;
        drop(self.tx.take());
        match self.worker.take().map(thread::JoinHandle::join) {
            Some(Ok(r)) => Ok(r?),
            _ => Err(ErofsError::Io {
                op: "hash verity leaves of",
                path: "the image".into(),
                source: std::io::Error::other("the verity hashing thread failed"),
            }),
        }
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
        b.rerecord(2, &data[..4096]).unwrap();
        let mut c = LeafDigests::new(VerityParams::containerd()).unwrap();
        c.record(0, &data).unwrap();
        let mut d = c.clone();
        d.record(2, &data[..4096]).unwrap();
        assert_eq!(format!("{:?}", a.finish().unwrap()), format!("{c:?}"));
        assert_eq!(format!("{:?}", b.finish().unwrap()), format!("{d:?}"));
    }
}

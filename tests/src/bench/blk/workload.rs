//! The reads a run issues: offsets (random or sequential, whole `len` blocks inside the
//! device) for a fixed time, on one connection.

use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::blk_client::BlkClient;

/// One workload of the comparison.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub depth: usize,
    pub len: usize,
    pub random: bool,
}

impl Workload {
    /// Reported in MiB/s rather than IOPS.
    pub fn is_bandwidth(&self) -> bool {
        self.len >= 1 << 20
    }
}

pub const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "4 KiB random read, QD1",
        depth: 1,
        len: 4096,
        random: true,
    },
    Workload {
        name: "4 KiB random read, QD32",
        depth: 32,
        len: 4096,
        random: true,
    },
    Workload {
        name: "1 MiB sequential read, QD4",
        depth: 4,
        len: 1 << 20,
        random: false,
    },
];

/// Offsets of `len`-byte reads inside a device of `capacity` bytes: xorshift64 over the
/// whole `len` blocks, or sequential with wrap-around. Every read lies inside the device:
/// `offset + len <= (capacity / len) * len <= capacity`, a tail shorter than `len` is
/// never read.
#[derive(Debug, Clone)]
pub struct Offsets {
    len: u64,
    blocks: u64,
    random: bool,
    x: u64,
    seq: u64,
}

impl Offsets {
    pub fn new(capacity: u64, len: usize, random: bool, seed: u64) -> anyhow::Result<Self> {
        let len = len as u64;
        ensure!(
            len > 0 && capacity >= len,
            "device of {capacity} bytes is smaller than one {len}-byte read"
        );
        Ok(Self {
            len,
            blocks: capacity / len,
            random,
            // xorshift64 must not start at 0.
            x: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            seq: 0,
        })
    }

    pub fn next_offset(&mut self) -> u64 {
        let block = if self.random {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            self.x % self.blocks
        } else {
            let b = self.seq % self.blocks;
            self.seq += 1;
            b
        };
        block * self.len
    }
}

/// Reads as [`Offsets`] describes, `depth` in flight, for `time`; returns the reads
/// completed and the time they took. Latencies go to `latencies` when given.
pub fn timed_reads(
    client: &mut BlkClient,
    depth: usize,
    len: usize,
    random: bool,
    seed: u64,
    time: Duration,
    latencies: Option<&mut Vec<u32>>,
) -> anyhow::Result<(u64, Duration)> {
    let mut offsets = Offsets::new(client.capacity(), len, random, seed)?;
    let start = Instant::now();
    let deadline = start + time;
    let mut issued = 0u32;
    let next = || {
        // A clock read every 64 reads keeps the check off the per-read cost.
        if issued.is_multiple_of(64) && Instant::now() >= deadline {
            return None;
        }
        issued = issued.wrapping_add(1);
        Some(offsets.next_offset())
    };
    let done = client.read_stream(depth, len, next, latencies)?;
    Ok((done, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_inside_the_device() {
        // A capacity that is not a multiple of len: the tail is never read.
        let capacity = (10 << 20) + 12_288;
        for (len, random) in [(4096, true), (1 << 20, false), (1 << 20, true)] {
            let mut o = Offsets::new(capacity, len, random, 7).unwrap();
            for _ in 0..10_000 {
                let at = o.next_offset();
                assert_eq!(at % len as u64, 0);
                assert!(at + len as u64 <= capacity);
            }
        }
    }

    #[test]
    fn sequential_offsets_wrap() {
        let mut o = Offsets::new(3 << 20, 1 << 20, false, 0).unwrap();
        let got: Vec<u64> = (0..4).map(|_| o.next_offset()).collect();
        assert_eq!(got, [0, 1 << 20, 2 << 20, 0]);
    }

    #[test]
    fn a_device_smaller_than_one_read_is_refused() {
        assert!(Offsets::new(4095, 4096, true, 1).is_err());
    }
}

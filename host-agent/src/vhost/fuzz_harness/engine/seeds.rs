//! The seeds of `fuzz/corpus/vhost_engine/`: programs built from [`Step`]s and encoded.

use super::program::{Op, Request, Step, encode};

/// Program disk numbers.
pub const LAYER: u8 = 0;
pub const LAYER_TREE: u8 = 1;
pub const COMPOSITE: u8 = 2;
pub const SCRATCH: u8 = 3;

fn step(disk: u8, queue: u8, flag: bool, op: Op) -> Step {
    Step {
        disk,
        queue,
        flag,
        op,
    }
}

/// Connect and bring up, EVENT_IDX on with `event_idx`.
pub fn bring_up(disk: u8, event_idx: bool) -> Step {
    step(disk, u8::from(event_idx), true, Op::Connect)
}

pub fn submit(disk: u8, queue: u8, reqs: &[Request]) -> Step {
    step(disk, queue, false, Op::Submit(reqs.to_vec()))
}

/// A read of `sectors` sectors (at most 15) from `sector`, three descriptors.
pub fn read(sector: u8, sectors: u8) -> Request {
    Request {
        kind: 0,
        sector,
        len: sectors,
    }
}

/// A write of `sectors` sectors (at most 15) at `sector`.
pub fn write(sector: u8, sectors: u8) -> Request {
    Request {
        kind: 1,
        sector,
        len: sectors,
    }
}

const FLUSH: Request = Request {
    kind: 2,
    sector: 0,
    len: 0,
};
const GET_ID: Request = Request {
    kind: 3,
    sector: 0,
    len: 0,
};
/// A read through an indirect table.
const READ_INDIRECT: Request = Request {
    kind: 2 << 3,
    sector: 1,
    len: 2,
};
/// A read with data and status in one descriptor.
const READ_MERGED: Request = Request {
    kind: 1 << 3,
    sector: 2,
    len: 1,
};
/// Write-zeroes of one sector.
const WRITE_ZEROES: Request = Request {
    kind: 5,
    sector: 1,
    len: 0,
};

/// The seeds: `(file name, input)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let reads = [read(0, 8), GET_ID, READ_INDIRECT, READ_MERGED];
    let mut out = vec![
        (
            "seed-read-layer",
            vec![
                bring_up(LAYER, false),
                submit(LAYER, 0, &reads),
                submit(LAYER, 1, &[read(16, 8), FLUSH]),
            ],
        ),
        (
            "seed-read-layer-tree",
            vec![bring_up(LAYER_TREE, true), submit(LAYER_TREE, 0, &reads)],
        ),
        (
            "seed-read-composite",
            vec![
                bring_up(COMPOSITE, false),
                submit(COMPOSITE, 0, &reads),
                submit(COMPOSITE, 1, &[read(8, 8)]),
            ],
        ),
        (
            "seed-scratch-write-read",
            vec![
                bring_up(SCRATCH, true),
                submit(SCRATCH, 0, &[write(0, 4), read(0, 8), WRITE_ZEROES, FLUSH]),
                submit(SCRATCH, 1, &[read(0, 4), write(8, 2)]),
            ],
        ),
    ];
    // Reconnect with requests in flight: a base away from the driver's index leaves the
    // queue's position unknown, so the next submit is not waited for.
    out.push((
        "seed-reconnect-mid-io",
        vec![
            bring_up(LAYER, false),
            submit(LAYER, 0, &[read(0, 8)]),
            step(LAYER, 0, false, Op::VringBase { value: 0x80 }),
            submit(LAYER, 1, &[read(0, 15), read(8, 15)]),
            submit(LAYER, 0, &[read(0, 15), read(8, 15), read(16, 8), GET_ID]),
            bring_up(LAYER, true),
            submit(LAYER, 0, &[read(4, 8)]),
            step(LAYER, 1, false, Op::GetVringBase),
        ],
    ));
    // libblkio's way: the rings' memory first, buffers added after start, removed, added.
    out.push((
        "seed-mem-add-remove",
        vec![
            step(SCRATCH, 0, false, Op::Connect),
            step(
                SCRATCH,
                0,
                false,
                Op::Handshake {
                    steps: 0x7f,
                    features: 0x1e,
                    protocol: 0x0f,
                },
            ),
            // One region: pages 0..24 (rings and headers).
            step(
                SCRATCH,
                0,
                false,
                Op::MemTable {
                    layout: 0x0c,
                    free: [0, 23, 0, 0, 0, 0],
                },
            ),
            step(
                SCRATCH,
                0,
                false,
                Op::Setup {
                    steps: 0x3f,
                    size: 4,
                },
            ),
            // Pages 24..40: the first data buffers of queue 0.
            step(
                SCRATCH,
                0,
                false,
                Op::AddRegion {
                    first: 24,
                    pages: 15,
                },
            ),
            submit(SCRATCH, 0, &[write(2, 2), read(0, 8)]),
            step(SCRATCH, 0, false, Op::RemoveRegion { which: 1 }),
            submit(SCRATCH, 0, &[read(2, 2)]),
            step(
                SCRATCH,
                0,
                false,
                Op::AddRegion {
                    first: 24,
                    pages: 15,
                },
            ),
            submit(SCRATCH, 0, &[read(2, 2)]),
        ],
    ));
    // Garbage on a live connection (a header claiming 4 GiB) and on a fresh one; the other
    // disks keep being served.
    out.push((
        "seed-garbage",
        vec![
            bring_up(LAYER, false),
            bring_up(COMPOSITE, false),
            step(
                LAYER,
                0,
                true,
                Op::Garbage(vec![1, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
            ),
            submit(COMPOSITE, 0, &[read(0, 8)]),
            step(
                LAYER_TREE,
                0,
                false,
                Op::Garbage(b"GET / HTTP/1.0\r\n\r\n".to_vec()),
            ),
            bring_up(LAYER, false),
            submit(LAYER, 0, &[read(0, 8)]),
        ],
    ));
    // Stopped with requests taken, restarted at the answered index.
    out.push((
        "seed-stop-restart",
        vec![
            bring_up(SCRATCH, false),
            submit(SCRATCH, 1, &[write(4, 1), read(4, 1)]),
            step(SCRATCH, 1, false, Op::GetVringBase),
            step(
                SCRATCH,
                1,
                false,
                Op::Setup {
                    steps: 0x3c,
                    size: 0,
                },
            ),
            submit(SCRATCH, 1, &[read(4, 1)]),
        ],
    ));
    out.into_iter()
        .map(|(name, steps)| (name, encode(&steps)))
        .collect()
}

//! How a `vhost_engine` fuzz input becomes a program: a sequence of steps, each an opcode
//! byte and a fixed number of operand bytes (a missing byte reads as 0; the input ends the
//! program, and so do [`MAX_STEPS`] steps).
//!
//! The opcode byte: bits 0–3 the operation, bits 4–5 the disk (0 layer, 1 layer with a
//! separate tree, 2 composite, 3 scratch: [`super::DISKS`]), bit 6 the queue (0 or 1;
//! queue 1 of a one-queue disk is an index the backend must refuse), bit 7 a flag whose
//! meaning depends on the operation. Operands, per operation:
//!
//! | op | name | operands | |
//! |---|---|---|---|
//! | 0 | connect | – | a new frontend on the disk's socket (the one it had is dropped first: a reconnect). Flag: and bring it up: full handshake (EVENT_IDX when the queue bit is set), one region over guest RAM, every queue set up with 64 entries and enabled |
//! | 1 | handshake | steps, features, protocol | steps bits: 0 SET_OWNER, 1 GET_FEATURES, 2 GET/SET_PROTOCOL_FEATURES, 3 GET_QUEUE_NUM, 4 GET_CONFIG, 5 SET_FEATURES, 6 GET_MAX_MEM_SLOTS, 7 a second SET_OWNER. features bits (acked, of those offered): 0 EVENT_IDX, 1 PROTOCOL_FEATURES, 2 INDIRECT_DESC, 3 VERSION_1, 4 the block features, 5 a bit not offered. protocol bits: 0 REPLY_ACK, 1 CONFIG, 2 MQ, 3 CONFIGURE_MEM_SLOTS |
//! | 2 | SET_MEM_TABLE | layout, 6 bytes | layout bits 0–1: 1 + v % 3 regions; bits 2–3: 0 adjacent, 1 a page hole after each, 2 each overlapping the previous by a page, 3 free (bytes 2i, 2i+1: first page, pages − 1); bit 7: sent in reverse order |
//! | 3 | ADD_MEM_REG | first page, pages | `1 + pages % 16` pages |
//! | 4 | REM_MEM_REG | which | bit 7 clear: region `which % n` of the table as the harness knows it; set: a range the table does not have |
//! | 5 | set up the queue | steps, size | steps bits: 0 SET_VRING_NUM, 1 SET_VRING_ADDR (the queue's standard rings), 2 SET_VRING_BASE (the driver's index), 3 SET_VRING_CALL, 4 SET_VRING_KICK, 5 SET_VRING_ENABLE 1, 6 SET_VRING_ERR |
//! | 6 | SET_VRING_NUM | size | below 0x80: `1 << (v % 11)` (1–1024); from 0x80 an invalid size (0, 3, 100, 1025, 2048, 65535) |
//! | 7 | SET_VRING_ADDR | mode, 3 bytes | mode % 4: 0 the standard rings, 1 an address no region holds, 2 a misaligned descriptor table (the backend drops the connection), 3 free: each byte a page of guest RAM or past it (desc, avail, used) |
//! | 8 | SET_VRING_BASE | value | bit 7 clear: the driver's available index; set: `value & 0x7f` |
//! | 9 | SET_VRING_CALL | – | |
//! | 10 | SET_VRING_KICK | – | |
//! | 11 | SET_VRING_ENABLE | – | 1, or 0 with the flag |
//! | 12 | GET_VRING_BASE | – | stops the queue (sent only for a queue the disk has: the vhost crate answers nothing for another index) |
//! | 13 | submit | count, 3 bytes per request | `1 + count % 4` requests ([`Request`]), made available at once, one kick |
//! | 14 | disconnect | – | drops the frontend |
//! | 15 | garbage | length, bytes | `1 + length % 64` bytes written raw on the connection (a fresh one if the disk has no frontend), which then closes. Flag: a message header first (request code and size from the first 5 bytes) |

/// Steps in a program at most.
pub const MAX_STEPS: usize = 40;
/// Requests in one submit at most.
pub const MAX_REQUESTS: usize = 4;
/// Garbage bytes in one step at most.
pub const MAX_GARBAGE: usize = 64;

/// One step: an operation on a disk's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 0..4.
    pub disk: u8,
    /// 0 or 1.
    pub queue: u8,
    pub flag: bool,
    pub op: Op,
}

/// A request of a submit: three bytes.
///
/// - `kind`: bits 0–2 the type (0 IN, 1 OUT, 2 FLUSH, 3 GET_ID, 4 DISCARD, 5 WRITE_ZEROES,
///   6 an unknown type, 7 IN); bits 3–4 the framing (0 header, data, status descriptors;
///   1 data and status in one descriptor; 2 the three in an indirect table; 3 malformed, bits
///   5–6 choosing how: a short header, a data buffer of the wrong direction, a descriptor
///   chained to itself, an indirect table of a length not a multiple of 16); bit 7 the data
///   buffer outside guest RAM;
/// - `sector`: the header's sector;
/// - `len`: bits 0–3 the data length in sectors (0–15), bit 4 plus 100 bytes (not whole
///   sectors); for DISCARD and WRITE_ZEROES: bit 4 the UNMAP flag, bit 5 two segments,
///   bits 6–7 the sectors of each, less one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub kind: u8,
    pub sector: u8,
    pub len: u8,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Connect,
    Handshake {
        steps: u8,
        features: u8,
        protocol: u8,
    },
    MemTable {
        layout: u8,
        free: [u8; 6],
    },
    AddRegion {
        first: u8,
        pages: u8,
    },
    RemoveRegion {
        which: u8,
    },
    Setup {
        steps: u8,
        size: u8,
    },
    VringNum {
        size: u8,
    },
    VringAddr {
        mode: u8,
        pages: [u8; 3],
    },
    VringBase {
        value: u8,
    },
    VringCall,
    VringKick,
    VringEnable,
    GetVringBase,
    Submit(Vec<Request>),
    Disconnect,
    Garbage(Vec<u8>),
}

impl Op {
    fn code(&self) -> u8 {
        match self {
            Self::Connect => 0,
            Self::Handshake { .. } => 1,
            Self::MemTable { .. } => 2,
            Self::AddRegion { .. } => 3,
            Self::RemoveRegion { .. } => 4,
            Self::Setup { .. } => 5,
            Self::VringNum { .. } => 6,
            Self::VringAddr { .. } => 7,
            Self::VringBase { .. } => 8,
            Self::VringCall => 9,
            Self::VringKick => 10,
            Self::VringEnable => 11,
            Self::GetVringBase => 12,
            Self::Submit(_) => 13,
            Self::Disconnect => 14,
            Self::Garbage(_) => 15,
        }
    }
}

/// Reads bytes, zeros past the end.
struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.input.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }
}

/// The program of `input`.
pub fn decode(input: &[u8]) -> Vec<Step> {
    let mut r = Reader { input, at: 0 };
    let mut steps = Vec::new();
    while r.at < input.len() && steps.len() < MAX_STEPS {
        let b = r.byte();
        let op = match b & 0x0f {
            0 => Op::Connect,
            1 => Op::Handshake {
                steps: r.byte(),
                features: r.byte(),
                protocol: r.byte(),
            },
            2 => Op::MemTable {
                layout: r.byte(),
                free: r.bytes(),
            },
            3 => Op::AddRegion {
                first: r.byte(),
                pages: r.byte(),
            },
            4 => Op::RemoveRegion { which: r.byte() },
            5 => Op::Setup {
                steps: r.byte(),
                size: r.byte(),
            },
            6 => Op::VringNum { size: r.byte() },
            7 => Op::VringAddr {
                mode: r.byte(),
                pages: r.bytes(),
            },
            8 => Op::VringBase { value: r.byte() },
            9 => Op::VringCall,
            10 => Op::VringKick,
            11 => Op::VringEnable,
            12 => Op::GetVringBase,
            13 => {
                let n = 1 + usize::from(r.byte()) % MAX_REQUESTS;
                Op::Submit(
                    (0..n)
                        .map(|_| Request {
                            kind: r.byte(),
                            sector: r.byte(),
                            len: r.byte(),
                        })
                        .collect(),
                )
            }
            14 => Op::Disconnect,
            _ => {
                let n = 1 + usize::from(r.byte()) % MAX_GARBAGE;
                Op::Garbage((0..n).map(|_| r.byte()).collect())
            }
        };
        steps.push(Step {
            disk: (b >> 4) & 3,
            queue: (b >> 6) & 1,
            flag: b & 0x80 != 0,
            op,
        });
    }
    steps
}

/// The input of a program ([`decode`] gives it back, for programs within the limits).
pub fn encode(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in steps {
        out.push(s.op.code() | (s.disk & 3) << 4 | (s.queue & 1) << 6 | u8::from(s.flag) << 7);
        match &s.op {
            Op::Handshake {
                steps,
                features,
                protocol,
            } => out.extend([*steps, *features, *protocol]),
            Op::MemTable { layout, free } => {
                out.push(*layout);
                out.extend(free);
            }
            Op::AddRegion { first, pages } => out.extend([*first, *pages]),
            Op::RemoveRegion { which } => out.push(*which),
            Op::Setup { steps, size } => out.extend([*steps, *size]),
            Op::VringNum { size } => out.push(*size),
            Op::VringAddr { mode, pages } => {
                out.push(*mode);
                out.extend(pages);
            }
            Op::VringBase { value } => out.push(*value),
            Op::Submit(reqs) => {
                // 1..=MAX_REQUESTS requests: the count byte is n - 1.
                out.push(reqs.len().clamp(1, MAX_REQUESTS) as u8 - 1);
                for r in reqs {
                    out.extend([r.kind, r.sector, r.len]);
                }
            }
            Op::Garbage(bytes) => {
                out.push(bytes.len().clamp(1, MAX_GARBAGE) as u8 - 1);
                out.extend(bytes);
            }
            Op::Connect
            | Op::VringCall
            | Op::VringKick
            | Op::VringEnable
            | Op::GetVringBase
            | Op::Disconnect => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_round_trip() {
        let steps = vec![
            Step {
                disk: 3,
                queue: 1,
                flag: true,
                op: Op::Connect,
            },
            Step {
                disk: 1,
                queue: 0,
                flag: false,
                op: Op::Submit(vec![
                    Request {
                        kind: 0,
                        sector: 2,
                        len: 1,
                    },
                    Request {
                        kind: 0x81,
                        sector: 0,
                        len: 0x1f,
                    },
                ]),
            },
            Step {
                disk: 0,
                queue: 0,
                flag: true,
                op: Op::Garbage(vec![1, 2, 3]),
            },
            Step {
                disk: 2,
                queue: 1,
                flag: false,
                op: Op::MemTable {
                    layout: 0x8f,
                    free: [1, 2, 3, 4, 5, 6],
                },
            },
        ];
        assert_eq!(decode(&encode(&steps)), steps);
    }

    #[test]
    fn every_byte_string_decodes_within_the_limits() {
        let input: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let steps = decode(&input);
        assert_eq!(steps.len(), MAX_STEPS);
        assert!(decode(&[]).is_empty());
        // A truncated step reads zeros.
        assert_eq!(
            decode(&[0x0d]),
            vec![Step {
                disk: 0,
                queue: 0,
                flag: false,
                op: Op::Submit(vec![Request {
                    kind: 0,
                    sector: 0,
                    len: 0
                }])
            }]
        );
    }
}

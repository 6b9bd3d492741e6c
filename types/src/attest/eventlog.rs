//! The attestation agent's event log file: what the guest's TPM backend writes and the
//! verifier reads, in the layout the CoCo attestation agent uses for its own log
//! (`/run/attestation-agent/eventlog`), so one verifier reads both.
//!
//! The file has no header (the agent writes no Spec ID event): it is a sequence of TCG2
//! crypto-agile entries (`TCG_PCR_EVENT2`), all little-endian:
//!
//! ```text
//! u32 register (PCR) index | u32 event type (EV_EVENT_TAG = 6) | u32 digest count
//! digest count × { u16 TPM_ALG_ID | the digest (its algorithm's size) }
//! u32 event size | event data = TaggedEvent { u32 id 0x4141454c "AAEL" | u32 size | text }
//! ```
//!
//! The text is `<domain> <operation> <content>` ([`Event::text`]) and every digest is the
//! hash of the event data (the whole `TaggedEvent`). [`parse`] reads hostile input: it never
//! panics, checks every length against the bytes left, bounds the file, the entries and the
//! event sizes, knows the size of every algorithm it accepts, and for `EV_EVENT_TAG` entries
//! checks that each SHA-2 digest is the hash of the entry's data, so no content can be
//! changed under a digest. [`replay`] recomputes a register's SHA-256 bank.

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::{AAEL_TAGGED_EVENT_ID, AttestError, Event};

/// TCG event type of a tagged event.
pub const EV_EVENT_TAG: u32 = 6;
/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_SHA384`.
pub const TPM_ALG_SHA384: u16 = 0x000c;
/// `TPM_ALG_SHA512`.
pub const TPM_ALG_SHA512: u16 = 0x000d;
/// `TPM_ALG_SM3_256`.
pub const TPM_ALG_SM3_256: u16 = 0x0012;

/// Largest log file read (16 MiB: some 30 000 layer events).
pub const MAX_LOG_SIZE: usize = 16 << 20;
/// Most entries in a log.
pub const MAX_ENTRIES: usize = 65_536;
/// Largest event data of one entry.
pub const MAX_EVENT_SIZE: u32 = 64 << 10;
/// Most digests in one entry (one per algorithm [`parse`] knows).
pub const MAX_DIGESTS: u32 = 5;

/// Bytes of an entry before its digests: register index, event type, digest count.
const HEAD_LEN: usize = 12;

/// What a log entry is made of, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The register index, event type and digest count.
    Header,
    /// A digest's algorithm id.
    Algorithm,
    /// A digest.
    Digest,
    /// The event size.
    EventSize,
    /// The event data.
    EventData,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Header => "header (register, event type, digest count)",
            Self::Algorithm => "digest algorithm id",
            Self::Digest => "digest",
            Self::EventSize => "event size",
            Self::EventData => "event data",
        })
    }
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The file ends inside the entry.
    #[error("truncated: its {field} needs {need} bytes, {remaining} left in the file")]
    Truncated {
        /// What was being read.
        field: Field,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// One entry more than [`MAX_ENTRIES`].
    #[error("more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// A digest count of 0 (nothing extended) or above [`MAX_DIGESTS`].
    #[error("digest count {count}: 1 to {max} allowed")]
    DigestCount {
        /// The count.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// A digest algorithm whose size is unknown.
    #[error("unknown digest algorithm 0x{algorithm:04x}")]
    UnknownAlgorithm {
        /// The `TPM_ALG_ID`.
        algorithm: u16,
    },
    /// Two digests of one algorithm.
    #[error("two digests of algorithm 0x{algorithm:04x}")]
    DuplicateAlgorithm {
        /// The `TPM_ALG_ID`.
        algorithm: u16,
    },
    /// Event data larger than [`MAX_EVENT_SIZE`].
    #[error("event size {size} bytes, at most {max} allowed")]
    EventTooLarge {
        /// The size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// A digest that is not the hash of the event data: the data was changed.
    #[error("its {algorithm} digest is not the hash of its event data")]
    DigestMismatch {
        /// `sha256`, `sha384` or `sha512`.
        algorithm: &'static str,
    },
    /// An `EV_EVENT_TAG` entry whose data is too short for a `TaggedEvent`'s id and size.
    #[error("event data of {data_len} bytes is too short for a tagged event (8 bytes or more)")]
    TaggedEventShort {
        /// The event data's size.
        data_len: usize,
    },
    /// An `EV_EVENT_TAG` entry whose `TaggedEvent` declares another size than it has.
    #[error(
        "tagged event declares {tagged_len} bytes, the event data holds {available} after its id and size"
    )]
    TaggedEventSize {
        /// The declared size.
        tagged_len: u32,
        /// The bytes there are.
        available: usize,
    },
    /// An AAEL event whose text is not UTF-8.
    #[error("AAEL event text is not UTF-8")]
    NotUtf8,
    /// An AAEL event whose text is not `<domain> <operation> <content>`.
    #[error("AAEL event: {0}")]
    Text(AttestError),
}

/// An event log that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// A file larger than [`MAX_LOG_SIZE`].
    #[error("event log is {size} bytes, at most {max} read")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An entry that cannot be read.
    #[error("event {index} at offset {offset}: {reason}")]
    Entry {
        /// The entry's index (from 0).
        index: usize,
        /// Its offset in the file.
        offset: u64,
        /// What is wrong.
        reason: EntryError,
    },
}

/// One digest of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDigest {
    /// Its `TPM_ALG_ID`.
    pub algorithm: u16,
    /// The digest.
    pub digest: Vec<u8>,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its index (from 0).
    pub index: usize,
    /// Its offset in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: usize,
    /// The register it was extended into (for the attestation agent: the PCR, or the TDX/CSV
    /// measurement register the PCR maps to).
    pub pcr_index: u32,
    /// Its TCG event type.
    pub event_type: u32,
    /// Every digest, as recorded.
    pub digests: Vec<LogDigest>,
    /// The SHA-256 digest, if recorded.
    pub sha256: Option<[u8; 32]>,
    /// The event data.
    pub event_data: Vec<u8>,
    /// The AAEL event, for `EV_EVENT_TAG` entries tagged `AAEL`.
    pub event: Option<Event>,
}

impl LogEntry {
    /// The entry's bytes as the log holds them (what [`parse`] read).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        out.extend_from_slice(&self.pcr_index.to_le_bytes());
        out.extend_from_slice(&self.event_type.to_le_bytes());
        // At most MAX_DIGESTS digests and MAX_EVENT_SIZE bytes of data in a parsed entry.
        out.extend_from_slice(&(self.digests.len() as u32).to_le_bytes());
        for d in &self.digests {
            out.extend_from_slice(&d.algorithm.to_le_bytes());
            out.extend_from_slice(&d.digest);
        }
        out.extend_from_slice(&(self.event_data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.event_data);
        out
    }
}

/// The bytes a new log file starts with: none. The attestation agent opens (or creates) its
/// log and appends entries; it writes no header and no Spec ID event.
#[must_use]
pub fn file_prefix() -> Vec<u8> {
    Vec::new()
}

/// One entry for `ev` extended into `pcr_index`: `EV_EVENT_TAG`, one SHA-256 digest of the
/// event data, the event data ([`Event::event_data`]).
#[must_use]
pub fn encode_entry(pcr_index: u32, ev: &Event) -> Vec<u8> {
    let data = ev.event_data();
    let mut out = Vec::with_capacity(HEAD_LEN + 2 + 32 + 4 + data.len());
    out.extend_from_slice(&pcr_index.to_le_bytes());
    out.extend_from_slice(&EV_EVENT_TAG.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&data));
    // Event data longer than 4 GiB cannot come from an event a verifier would read
    // (MAX_EVENT_SIZE); cut as the attestation agent's `as u32` would.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// A whole log: [`file_prefix`] and one entry per event, all extended into `pcr_index`.
#[must_use]
pub fn encode_log(pcr_index: u32, events: &[Event]) -> Vec<u8> {
    let mut out = file_prefix();
    for ev in events {
        out.extend_from_slice(&encode_entry(pcr_index, ev));
    }
    out
}

/// The size of a digest of `algorithm`, for the algorithms a log may hold.
#[must_use]
pub const fn digest_size(algorithm: u16) -> Option<usize> {
    match algorithm {
        TPM_ALG_SHA1 => Some(20),
        TPM_ALG_SHA256 | TPM_ALG_SM3_256 => Some(32),
        TPM_ALG_SHA384 => Some(48),
        TPM_ALG_SHA512 => Some(64),
        _ => None,
    }
}

/// Reads bytes off the front of the rest of the file.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], EntryError> {
        if n > self.rest.len() {
            return Err(EntryError::Truncated {
                field,
                need: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u16(&mut self, field: Field) -> Result<u16, EntryError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: Field) -> Result<u32, EntryError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses a whole log file.
///
/// # Errors
/// [`EventLogError::TooLarge`] for a file over [`MAX_LOG_SIZE`]; otherwise
/// [`EventLogError::Entry`] naming the first entry that cannot be read (index and offset)
/// and why.
pub fn parse(bytes: &[u8]) -> Result<Vec<LogEntry>, EventLogError> {
    if bytes.len() > MAX_LOG_SIZE {
        return Err(EventLogError::TooLarge {
            size: bytes.len(),
            max: MAX_LOG_SIZE,
        });
    }
    let mut entries = Vec::new();
    let mut cursor = Cursor { rest: bytes };
    while !cursor.rest.is_empty() {
        let index = entries.len();
        let offset = bytes.len() - cursor.rest.len();
        let at = |reason| EventLogError::Entry {
            index,
            offset: offset as u64,
            reason,
        };
        if index == MAX_ENTRIES {
            return Err(at(EntryError::TooManyEntries { max: MAX_ENTRIES }));
        }
        let mut entry = entry(&mut cursor).map_err(at)?;
        entry.index = index;
        entry.offset = offset as u64;
        entry.len = bytes.len() - cursor.rest.len() - offset;
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads one entry (index, offset and length filled in by the caller).
fn entry(cursor: &mut Cursor<'_>) -> Result<LogEntry, EntryError> {
    if cursor.rest.len() < HEAD_LEN {
        return Err(EntryError::Truncated {
            field: Field::Header,
            need: HEAD_LEN,
            remaining: cursor.rest.len(),
        });
    }
    let pcr_index = cursor.u32(Field::Header)?;
    let event_type = cursor.u32(Field::Header)?;
    let count = cursor.u32(Field::Header)?;
    if count == 0 || count > MAX_DIGESTS {
        return Err(EntryError::DigestCount {
            count,
            max: MAX_DIGESTS,
        });
    }
    let mut digests: Vec<LogDigest> = Vec::new();
    for _ in 0..count {
        let algorithm = cursor.u16(Field::Algorithm)?;
        let size = digest_size(algorithm).ok_or(EntryError::UnknownAlgorithm { algorithm })?;
        if digests.iter().any(|d| d.algorithm == algorithm) {
            return Err(EntryError::DuplicateAlgorithm { algorithm });
        }
        let digest = cursor.take(size, Field::Digest)?.to_vec();
        digests.push(LogDigest { algorithm, digest });
    }
    let size = cursor.u32(Field::EventSize)?;
    if size > MAX_EVENT_SIZE {
        return Err(EntryError::EventTooLarge {
            size,
            max: MAX_EVENT_SIZE,
        });
    }
    let event_data = cursor.take(size as usize, Field::EventData)?.to_vec();
    let sha256 = digests
        .iter()
        .find(|d| d.algorithm == TPM_ALG_SHA256)
        .and_then(|d| <[u8; 32]>::try_from(d.digest.as_slice()).ok());
    let event = if event_type == EV_EVENT_TAG {
        check_digests(&digests, &event_data)?;
        tagged_event(&event_data)?
    } else {
        None
    };
    Ok(LogEntry {
        index: 0,
        offset: 0,
        len: 0,
        pcr_index,
        event_type,
        digests,
        sha256,
        event_data,
        event,
    })
}

/// Every SHA-2 digest must be the hash of the event data (SHA-1 and SM3 are not checked:
/// the verifier replays the SHA-256 bank only).
fn check_digests(digests: &[LogDigest], data: &[u8]) -> Result<(), EntryError> {
    for d in digests {
        let (algorithm, ok) = match d.algorithm {
            TPM_ALG_SHA256 => ("sha256", Sha256::digest(data).as_slice() == d.digest),
            TPM_ALG_SHA384 => ("sha384", Sha384::digest(data).as_slice() == d.digest),
            TPM_ALG_SHA512 => ("sha512", Sha512::digest(data).as_slice() == d.digest),
            _ => continue,
        };
        if !ok {
            return Err(EntryError::DigestMismatch { algorithm });
        }
    }
    Ok(())
}

/// The AAEL event in a `TaggedEvent` (`None` for other tags).
fn tagged_event(data: &[u8]) -> Result<Option<Event>, EntryError> {
    let (Some(id), Some(len)) = (data.get(0..4), data.get(4..8)) else {
        return Err(EntryError::TaggedEventShort {
            data_len: data.len(),
        });
    };
    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    let text = data.get(8..).unwrap_or_default();
    if text.len() != len as usize {
        return Err(EntryError::TaggedEventSize {
            tagged_len: len,
            available: text.len(),
        });
    }
    if id != AAEL_TAGGED_EVENT_ID {
        return Ok(None);
    }
    let text = std::str::from_utf8(text).map_err(|_| EntryError::NotUtf8)?;
    Event::from_text(text).map(Some).map_err(EntryError::Text)
}

/// The SHA-256 bank of register `pcr_index` after the entries of that register, from all
/// zeros: `pcr = SHA-256(pcr ‖ digest)` for each entry's SHA-256 digest, in order. Entries
/// without a SHA-256 digest extend nothing in that bank (the verifier refuses them).
#[must_use]
pub fn replay(entries: &[LogEntry], pcr_index: u32) -> [u8; 32] {
    let mut pcr = [0u8; 32];
    for digest in entries
        .iter()
        .filter(|e| e.pcr_index == pcr_index)
        .filter_map(|e| e.sha256)
    {
        let mut h = Sha256::new();
        h.update(pcr);
        h.update(digest);
        pcr = h.finalize().into();
    }
    pcr
}

#[cfg(test)]
mod tests;

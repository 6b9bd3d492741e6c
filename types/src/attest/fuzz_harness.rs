//! The fuzz harness of the event-log parser, in one place for the fuzz target and the
//! tests.
//!
//! `fuzz/fuzz_targets/event_log.rs` hands every input to [`run`], and so does
//! `types/tests/fuzz_corpus.rs` for every file of the committed corpus, so `cargo test` runs
//! exactly the fuzz target's code. Not used by the agents themselves.
//!
//! An input is an event-log file as `layerpass attest verify --event-log` reads it. The
//! oracle, checked on every input:
//! - nothing panics;
//! - a rejected log names an entry that starts inside the input, and everything before that
//!   entry parses on its own to exactly that many entries (the error is the first bad entry);
//! - an accepted log's entries are numbered in order, lie end to end over the whole input and
//!   encode back to the input byte for byte;
//! - every `EV_EVENT_TAG` entry's SHA-256 digest is the hash of its data, and every AAEL event
//!   encodes back to its entry's data;
//! - a layerpass event whose content reads as a [`LayerMeasurement`] is valid and its content
//!   is its canonical JSON;
//! - replaying is deterministic.
//!
//! Random mutations almost never keep an entry's digest the hash of its data, so most
//! mutated inputs would stop at the digest check. Like `tar_convert` rewriting tar header
//! checksums, each input is run twice: as it is, then with the SHA-2 digests of its
//! `EV_EVENT_TAG` entries rewritten to match their data ([`fix_digests`]), so the fuzzer
//! reaches the tagged-event, text and measurement code behind the check.

use sha2::{Digest as _, Sha256};

use super::eventlog::{self, EV_EVENT_TAG, EventLogError};
use super::{DOMAIN, Event, LayerMeasurement, Operation};

/// What one input came to (for tests that check a corpus reaches every stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The log was accepted.
    pub accepted: bool,
    /// Entries of an accepted log.
    pub entries: usize,
    /// AAEL events in them.
    pub aael: usize,
    /// layerpass events whose content is a valid measurement.
    pub measurements: usize,
    /// The input with its digests fixed ([`fix_digests`]) was accepted.
    pub fixed_accepted: bool,
    /// Measurements in it.
    pub fixed_measurements: usize,
}

/// A broken invariant: a bug in the parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A rejection that names an entry outside the input or not the first bad one.
    #[error("bad rejection: {0}")]
    Rejection(String),
    /// An accepted log whose entries do not give back the input.
    #[error("accepted log: {0}")]
    Accepted(String),
    /// A measurement read from a content it does not encode to, or that is invalid.
    #[error("measurement: {0}")]
    Measurement(String),
}

/// Runs the oracle on one input.
///
/// # Errors
/// [`Violation`] naming the broken invariant.
pub fn run(input: &[u8]) -> Result<Outcome, Violation> {
    let as_is = run_one(input)?;
    let mut fixed = input.to_vec();
    fix_digests(&mut fixed);
    if fixed == input {
        return Ok(Outcome {
            fixed_accepted: as_is.accepted,
            fixed_measurements: as_is.measurements,
            ..as_is
        });
    }
    let fixed = run_one(&fixed)?;
    Ok(Outcome {
        fixed_accepted: fixed.accepted,
        fixed_measurements: fixed.measurements,
        ..as_is
    })
}

/// Rewrites, in place, every SHA-256/384/512 digest of every `EV_EVENT_TAG` entry to the
/// hash of its event data, walking the entries as far as their lengths allow (no checks of
/// counts or sizes beyond the bytes there are).
pub fn fix_digests(log: &mut [u8]) {
    let mut pos = 0usize;
    loop {
        let Some(head) = log.get(pos..pos + 12) else {
            return;
        };
        let event_type = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let count = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        pos += 12;
        let mut digests = Vec::new();
        for _ in 0..count.min(eventlog::MAX_DIGESTS) {
            let Some(alg) = log.get(pos..pos + 2) else {
                return;
            };
            let alg = u16::from_le_bytes([alg[0], alg[1]]);
            let Some(size) = eventlog::digest_size(alg) else {
                return;
            };
            digests.push((alg, pos + 2));
            pos += 2 + size;
        }
        let Some(size) = log.get(pos..pos + 4) else {
            return;
        };
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        pos += 4;
        let Some(data) = log.get(pos..pos.saturating_add(size)) else {
            return;
        };
        let data = data.to_vec();
        pos += size;
        if event_type != EV_EVENT_TAG {
            continue;
        }
        for (alg, at) in digests {
            let hash: Vec<u8> = match alg {
                eventlog::TPM_ALG_SHA256 => Sha256::digest(&data).to_vec(),
                eventlog::TPM_ALG_SHA384 => sha2::Sha384::digest(&data).to_vec(),
                eventlog::TPM_ALG_SHA512 => sha2::Sha512::digest(&data).to_vec(),
                _ => continue,
            };
            if let Some(slot) = log.get_mut(at..at + hash.len()) {
                slot.copy_from_slice(&hash);
            }
        }
    }
}

/// The oracle on one input as it is.
fn run_one(input: &[u8]) -> Result<Outcome, Violation> {
    match eventlog::parse(input) {
        Err(EventLogError::TooLarge { size, .. }) if size == input.len() => Ok(Outcome::default()),
        Err(EventLogError::TooLarge { size, .. }) => Err(Violation::Rejection(format!(
            "too large: {size} bytes for an input of {}",
            input.len()
        ))),
        Err(EventLogError::Entry { index, offset, .. }) => {
            let start = usize::try_from(offset)
                .ok()
                .filter(|o| *o < input.len())
                .ok_or_else(|| {
                    Violation::Rejection(format!("offset {offset} outside {} bytes", input.len()))
                })?;
            match eventlog::parse(input.get(..start).unwrap_or_default()) {
                Ok(before) if before.len() == index => Ok(Outcome::default()),
                Ok(before) => Err(Violation::Rejection(format!(
                    "entry {index} at {offset}, but {} entries before it",
                    before.len()
                ))),
                Err(e) => Err(Violation::Rejection(format!(
                    "entry {index} at {offset}, but the bytes before it fail: {e}"
                ))),
            }
        }
        Ok(entries) => accepted(input, &entries),
    }
}

fn accepted(input: &[u8], entries: &[eventlog::LogEntry]) -> Result<Outcome, Violation> {
    let mut outcome = Outcome {
        accepted: true,
        entries: entries.len(),
        ..Outcome::default()
    };
    let mut rebuilt = eventlog::file_prefix();
    for (i, e) in entries.iter().enumerate() {
        if e.index != i || e.offset != rebuilt.len() as u64 {
            return Err(Violation::Accepted(format!(
                "entry {i} numbered {} at {}, expected at {}",
                e.index,
                e.offset,
                rebuilt.len()
            )));
        }
        let bytes = e.to_bytes();
        if bytes.len() != e.len {
            return Err(Violation::Accepted(format!(
                "entry {i} is {} bytes, encodes to {}",
                e.len,
                bytes.len()
            )));
        }
        rebuilt.extend_from_slice(&bytes);
        if e.event_type == EV_EVENT_TAG
            && let Some(sha) = e.sha256
            && sha != <[u8; 32]>::from(Sha256::digest(&e.event_data))
        {
            return Err(Violation::Accepted(format!(
                "entry {i}: its SHA-256 digest is not the hash of its data"
            )));
        }
        if let Some(ev) = &e.event {
            outcome.aael += 1;
            if ev.event_data() != e.event_data {
                return Err(Violation::Accepted(format!(
                    "entry {i}: the event {ev:?} does not encode to its data"
                )));
            }
            outcome.measurements += usize::from(measurement(ev)?);
        }
    }
    if rebuilt != input {
        return Err(Violation::Accepted(
            "the entries do not encode back to the input".into(),
        ));
    }
    let pcrs: Vec<u32> = entries.iter().map(|e| e.pcr_index).collect();
    for pcr in pcrs {
        if eventlog::replay(entries, pcr) != eventlog::replay(entries, pcr) {
            return Err(Violation::Accepted(format!(
                "replaying register {pcr} is not deterministic"
            )));
        }
    }
    Ok(outcome)
}

/// Whether `ev` is a layerpass event holding a measurement (checked when it is).
fn measurement(ev: &Event) -> Result<bool, Violation> {
    if ev.domain != DOMAIN || Operation::parse(&ev.operation).is_none() {
        return Ok(false);
    }
    let Ok(m) = LayerMeasurement::from_content(&ev.content) else {
        return Ok(false);
    };
    if m.canonical_json() != ev.content {
        return Err(Violation::Measurement(format!(
            "{:?} read from {:?}",
            m, ev.content
        )));
    }
    m.validate()
        .map_err(|e| Violation::Measurement(format!("{m:?} accepted but invalid: {e}")))?;
    Ok(true)
}

/// The seeds of `fuzz/corpus/event_log/`: valid logs (three layers mounted; mounts, an
/// unmount and a foreign event; an entry with two banks), an empty log, and broken ones (cut
/// inside an entry, a flipped content byte, a non-canonical content).
#[must_use]
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let layer = |n: u8, container: &str| LayerMeasurement {
        container_id: container.to_owned(),
        digest: Some(format!("sha256:{}", hex::encode([n; 32]))),
        root_hash: hex::encode([n.wrapping_add(100); 32]),
        hash_algorithm: "sha256".into(),
        salt: hex::encode([0u8; 32]),
        data_size: 4096 * u64::from(n),
        corruption: "eio".into(),
    };
    let mounts: Vec<Event> = (1..=3)
        .map(|n| Event::layer(Operation::MountLayer, &layer(n, "c1")))
        .collect();
    let three = eventlog::encode_log(14, &mounts);
    let foreign = Event {
        domain: "github.com/confidential-containers".into(),
        operation: "PullImage".into(),
        content: "{\"digest\":\"sha256:00\",\"image\":\"x\"}".into(),
    };
    let mut mixed = mounts[..2].to_vec();
    mixed.push(foreign);
    mixed.push(Event::layer(Operation::UnmountLayer, &layer(1, "c1")));
    let mut no_digest = layer(4, "c2");
    no_digest.digest = None;
    mixed.push(Event::layer(Operation::MountLayer, &no_digest));
    let mixed = eventlog::encode_log(17, &mixed);
    let mut flipped = three.clone();
    let at = flipped.len() - 5;
    flipped[at] ^= 0x20;
    let mut spaced = mounts[0].clone();
    spaced.content = spaced.content.replacen(',', ", ", 1);
    vec![
        ("seed-three-mounts", three.clone()),
        ("seed-mixed", mixed),
        ("seed-two-banks", two_banks(&mounts[0])),
        ("seed-empty", Vec::new()),
        ("seed-truncated", three[..three.len() / 2].to_vec()),
        ("seed-flipped", flipped),
        ("seed-not-canonical", eventlog::encode_entry(14, &spaced)),
    ]
}

/// One entry with SHA-384 and SHA-256 digests.
fn two_banks(ev: &Event) -> Vec<u8> {
    let data = ev.event_data();
    let mut b = Vec::new();
    b.extend_from_slice(&14u32.to_le_bytes());
    b.extend_from_slice(&EV_EVENT_TAG.to_le_bytes());
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&eventlog::TPM_ALG_SHA384.to_le_bytes());
    b.extend_from_slice(&sha2::Sha384::digest(&data));
    b.extend_from_slice(&eventlog::TPM_ALG_SHA256.to_le_bytes());
    b.extend_from_slice(&Sha256::digest(&data));
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    b
}

use super::*;

fn ev(domain: &str, operation: &str, content: &str) -> Event {
    Event {
        domain: domain.into(),
        operation: operation.into(),
        content: content.into(),
    }
}

/// One entry, byte for byte (computed independently with Python's `struct` and `hashlib`).
#[test]
fn golden_entry() {
    let bytes = encode_entry(14, &ev("d", "o", "{}"));
    assert_eq!(
        hex::encode(&bytes),
        "0e000000\
         06000000\
         01000000\
         0b00\
         2556178c98ae0a4643e5c0f1a721c59cad9d995e337b3b568d1e33d6733788aa\
         0e000000\
         4c454141\
         06000000\
         64206f207b7d"
    );
    let entries = parse(&bytes).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e.index, e.offset, e.len), (0, 0, bytes.len()));
    assert_eq!((e.pcr_index, e.event_type), (14, EV_EVENT_TAG));
    assert_eq!(e.sha256, Some(ev("d", "o", "{}").sha256()));
    assert_eq!(e.event, Some(ev("d", "o", "{}")));
    assert!(file_prefix().is_empty());
}

/// A three-event log replays to the extend chain computed by hand (Python:
/// `pcr = sha256(pcr + sha256(tagged_event))` from 32 zero bytes).
#[test]
fn replay_of_three_events() {
    let events = [ev("a", "b", "1"), ev("a", "b", "2"), ev("c", "d", "3")];
    let mut log = encode_log(14, &events);
    // An entry of another register is not part of the chain.
    log.extend_from_slice(&encode_entry(15, &ev("x", "y", "z")));
    let entries = parse(&log).unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[1].offset, entries[0].len as u64);
    assert_eq!(
        hex::encode(replay(&entries, 14)),
        "17edc143742262a9e303926408d6e140dde79fc46aa781c3ed07de9c16795a79"
    );
    assert_eq!(replay(&entries, 16), [0u8; 32], "nothing extended");
    assert_ne!(replay(&entries, 15), [0u8; 32]);
}

#[test]
fn empty_log() {
    assert_eq!(parse(&[]).unwrap(), vec![]);
    assert_eq!(replay(&[], 14), [0u8; 32]);
}

fn entry_error(bytes: &[u8]) -> (usize, u64, EntryError) {
    match parse(bytes) {
        Err(EventLogError::Entry {
            index,
            offset,
            reason,
        }) => (index, offset, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_logs_name_the_entry() {
    let first = encode_entry(14, &ev("a", "b", "1"));
    let second = encode_entry(14, &ev("a", "b", "2"));
    let log = [first.clone(), second.clone()].concat();
    for cut in 1..second.len() {
        let (index, offset, reason) = entry_error(&log[..first.len() + cut]);
        assert_eq!((index, offset), (1, first.len() as u64), "cut {cut}");
        assert!(
            matches!(reason, EntryError::Truncated { .. }),
            "cut {cut}: {reason}"
        );
    }
    let (_, _, reason) = entry_error(&log[..first.len() + 5]);
    assert_eq!(
        reason,
        EntryError::Truncated {
            field: Field::Header,
            need: 12,
            remaining: 5
        }
    );
    let (_, _, reason) = entry_error(&log[..log.len() - 1]);
    assert!(matches!(
        reason,
        EntryError::Truncated {
            field: Field::EventData,
            ..
        }
    ));
    let msg = parse(&log[..log.len() - 1]).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("event 1 at offset {}: truncated", first.len())),
        "{msg}"
    );
}

/// Rewrites the u32 at `at` in `bytes`.
fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn bounds_are_checked() {
    let one = encode_entry(14, &ev("a", "b", "1"));
    // Digest count 0 and too many.
    for count in [0, MAX_DIGESTS + 1, u32::MAX] {
        let mut b = one.clone();
        set_u32(&mut b, 8, count);
        assert!(
            matches!(entry_error(&b).2, EntryError::DigestCount { .. }),
            "{count}"
        );
    }
    // An event size over the limit is refused before anything is read or allocated.
    let mut b = one.clone();
    set_u32(&mut b, 12 + 2 + 32, MAX_EVENT_SIZE + 1);
    assert!(matches!(
        entry_error(&b).2,
        EntryError::EventTooLarge { .. }
    ));
    let mut b = one.clone();
    set_u32(&mut b, 12 + 2 + 32, u32::MAX);
    assert!(matches!(
        entry_error(&b).2,
        EntryError::EventTooLarge { .. }
    ));
    // An event size under the limit but past the end of the file.
    let mut b = one.clone();
    set_u32(&mut b, 12 + 2 + 32, MAX_EVENT_SIZE);
    assert!(matches!(
        entry_error(&b).2,
        EntryError::Truncated {
            field: Field::EventData,
            ..
        }
    ));
    // A file over the limit.
    let big = vec![0u8; MAX_LOG_SIZE + 1];
    assert!(matches!(parse(&big), Err(EventLogError::TooLarge { .. })));
}

#[test]
fn too_many_entries() {
    // The smallest entry: a non-tagged event with one SHA-1 digest and no data (38 bytes).
    let mut small = Vec::new();
    small.extend_from_slice(&14u32.to_le_bytes());
    small.extend_from_slice(&3u32.to_le_bytes());
    small.extend_from_slice(&1u32.to_le_bytes());
    small.extend_from_slice(&TPM_ALG_SHA1.to_le_bytes());
    small.extend_from_slice(&[0u8; 20]);
    small.extend_from_slice(&0u32.to_le_bytes());
    let log = small.repeat(MAX_ENTRIES + 1);
    assert!(log.len() <= MAX_LOG_SIZE);
    let (index, offset, reason) = entry_error(&log);
    assert_eq!(index, MAX_ENTRIES);
    assert_eq!(offset, (MAX_ENTRIES * small.len()) as u64);
    assert_eq!(reason, EntryError::TooManyEntries { max: MAX_ENTRIES });
    assert_eq!(
        parse(&small.repeat(MAX_ENTRIES)).unwrap().len(),
        MAX_ENTRIES
    );
}

#[test]
fn digests_are_checked() {
    let good = encode_entry(14, &ev("a", "b", "content"));
    // A flipped byte in the text: the digest no longer matches.
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert_eq!(
        entry_error(&b).2,
        EntryError::DigestMismatch {
            algorithm: "sha256"
        }
    );
    // A flipped byte in the digest.
    let mut b = good.clone();
    b[14] ^= 1;
    assert_eq!(
        entry_error(&b).2,
        EntryError::DigestMismatch {
            algorithm: "sha256"
        }
    );
    // Unknown algorithm: its size is unknown, nothing after it can be read.
    let mut b = good.clone();
    b[12..14].copy_from_slice(&0x0099u16.to_le_bytes());
    assert_eq!(
        entry_error(&b).2,
        EntryError::UnknownAlgorithm { algorithm: 0x99 }
    );
}

/// An entry with several banks: every SHA-2 digest must match, a duplicate bank is refused.
#[test]
fn several_banks() {
    let event = ev("a", "b", "c");
    let data = event.event_data();
    let build = |digests: &[(u16, Vec<u8>)]| {
        let mut b = Vec::new();
        b.extend_from_slice(&14u32.to_le_bytes());
        b.extend_from_slice(&EV_EVENT_TAG.to_le_bytes());
        b.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (alg, d) in digests {
            b.extend_from_slice(&alg.to_le_bytes());
            b.extend_from_slice(d);
        }
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    };
    let sha256 = Sha256::digest(&data).to_vec();
    let sha384 = Sha384::digest(&data).to_vec();
    let sm3 = vec![7u8; 32];
    let ok = build(&[
        (TPM_ALG_SHA384, sha384.clone()),
        (TPM_ALG_SM3_256, sm3.clone()),
        (TPM_ALG_SHA256, sha256.clone()),
    ]);
    let entries = parse(&ok).unwrap();
    assert_eq!(entries[0].sha256.map(Vec::from), Some(sha256.clone()));
    assert_eq!(entries[0].digests.len(), 3);
    let wrong384 = build(&[
        (TPM_ALG_SHA256, sha256.clone()),
        (TPM_ALG_SHA384, vec![0; 48]),
    ]);
    assert_eq!(
        entry_error(&wrong384).2,
        EntryError::DigestMismatch {
            algorithm: "sha384"
        }
    );
    let twice = build(&[(TPM_ALG_SHA256, sha256.clone()), (TPM_ALG_SHA256, sha256)]);
    assert_eq!(
        entry_error(&twice).2,
        EntryError::DuplicateAlgorithm {
            algorithm: TPM_ALG_SHA256
        }
    );
    // Without a SHA-256 digest the entry extends nothing in that bank.
    let no256 = build(&[(TPM_ALG_SHA384, sha384)]);
    let entries = parse(&no256).unwrap();
    assert_eq!(entries[0].sha256, None);
    assert_eq!(replay(&entries, 14), [0u8; 32]);
}

/// Builds an `EV_EVENT_TAG` entry around raw event data, with its right digest.
fn tagged(data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&14u32.to_le_bytes());
    b.extend_from_slice(&EV_EVENT_TAG.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
    b.extend_from_slice(&Sha256::digest(data));
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn tagged_events_are_checked() {
    let mut data = AAEL_TAGGED_EVENT_ID.to_le_bytes().to_vec();
    data.extend_from_slice(&5u32.to_le_bytes());
    data.extend_from_slice(b"a b c");
    assert_eq!(
        parse(&tagged(&data)).unwrap()[0].event,
        Some(ev("a", "b", "c"))
    );
    // Declared size differs from the data.
    let mut d = data.clone();
    d[4] = 4;
    assert_eq!(
        entry_error(&tagged(&d)).2,
        EntryError::TaggedEventSize {
            tagged_len: 4,
            available: 5
        }
    );
    // Too short for a tagged event.
    assert_eq!(
        entry_error(&tagged(&data[..7])).2,
        EntryError::TaggedEventShort { data_len: 7 }
    );
    // Another tag: no AAEL event, but a valid entry.
    let mut d = data.clone();
    d[0] = b'X';
    let entries = parse(&tagged(&d)).unwrap();
    assert_eq!(entries[0].event, None);
    // Not UTF-8; not `domain operation content`; a line feed in the content.
    let mut d = data.clone();
    d[8] = 0xff;
    assert_eq!(entry_error(&tagged(&d)).2, EntryError::NotUtf8);
    let mut d = data.clone();
    d[9] = b'_';
    assert!(matches!(entry_error(&tagged(&d)).2, EntryError::Text(_)));
    let mut d = data;
    d[12] = b'\n';
    assert!(matches!(entry_error(&tagged(&d)).2, EntryError::Text(_)));
}

/// Entries of other types are read but not interpreted (the verifier refuses them).
#[test]
fn other_event_types() {
    let mut b = tagged(b"anything");
    set_u32(&mut b, 4, 0x8000_0001);
    let entries = parse(&b).unwrap();
    assert_eq!(entries[0].event_type, 0x8000_0001);
    assert_eq!(entries[0].event, None);
    assert_eq!(entries[0].event_data, b"anything");
}

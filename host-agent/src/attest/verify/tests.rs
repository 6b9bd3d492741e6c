use layerpass_types::attest::Event;
use layerpass_types::attest::eventlog::{encode_entry, encode_log, parse, replay};
use sha2::{Digest as _, Sha256};

use super::*;

fn layer(n: u8) -> LayerMeasurement {
    LayerMeasurement {
        container_id: "c1".into(),
        digest: Some(format!("sha256:{}", hex::encode([n; 32]))),
        root_hash: hex::encode([n + 100; 32]),
        hash_algorithm: "sha256".into(),
        salt: String::new(),
        data_size: 4096,
        corruption: "eio".into(),
    }
}

fn mounts() -> Vec<Event> {
    (1..=3)
        .map(|n| Event::layer(Operation::MountLayer, &layer(n)))
        .collect()
}

fn refs(ns: &[u8]) -> ReferenceValues {
    let mut r = ReferenceValues::default();
    for n in ns {
        r.allow(&hex::encode([n + 100; 32]));
    }
    r
}

/// Options whose register is the replay of `log`'s PCR 14.
fn opts_for(log: &[u8], refs: Option<ReferenceValues>) -> VerifyOptions {
    VerifyOptions {
        pcr_index: 14,
        pcr: replay(&parse(log).unwrap(), 14),
        reference_values: refs,
    }
}

#[test]
fn accepts_a_log_that_replays_and_is_allowed() {
    let log = encode_log(14, &mounts());
    let report = verify(&log, &opts_for(&log, Some(refs(&[1, 2, 3])))).unwrap();
    assert_eq!(report.events.len(), 3);
    assert!(report.reference_values_checked);
    match &report.events[1] {
        VerifiedEvent::Layer {
            index,
            root_hash,
            reference_values,
            ..
        } => {
            assert_eq!(*index, 1);
            assert_eq!(*root_hash, hex::encode([102u8; 32]));
            assert_eq!(*reference_values, Some(true));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wrong_register_value_is_rejected() {
    let log = encode_log(14, &mounts());
    let mut opts = opts_for(&log, None);
    opts.pcr[0] ^= 1;
    let r = verify(&log, &opts).unwrap_err();
    assert_eq!(r.entry, None);
    assert!(matches!(
        r.reason,
        RejectReason::PcrMismatch { entries: 3, .. }
    ));
    // A log missing its last event does not replay to the register either.
    let full = opts_for(&log, None);
    let two = encode_log(14, &mounts()[..2]);
    assert!(matches!(
        verify(&two, &full).unwrap_err().reason,
        RejectReason::PcrMismatch { entries: 2, .. }
    ));
}

#[test]
fn an_unlisted_root_hash_is_rejected_naming_the_event() {
    let log = encode_log(14, &mounts());
    let r = verify(&log, &opts_for(&log, Some(refs(&[1, 3])))).unwrap_err();
    let second = parse(&log).unwrap()[1].offset;
    assert_eq!(
        r.entry,
        Some(EntryRef {
            index: 1,
            offset: second
        })
    );
    assert_eq!(
        r.to_string(),
        format!(
            "event 1 at offset {second}: container c1: root hash {} is not in the reference values",
            hex::encode([102u8; 32])
        )
    );
    // Unmounts are not checked against the reference values.
    let log = encode_log(14, &[Event::layer(Operation::UnmountLayer, &layer(2))]);
    verify(&log, &opts_for(&log, Some(refs(&[1])))).unwrap();
}

#[test]
fn a_changed_event_is_rejected_naming_it() {
    let mut log = encode_log(14, &mounts());
    let opts = opts_for(&log, None);
    let third = parse(&log).unwrap()[2].offset;
    let last = log.len() - 3;
    log[last] ^= 1;
    let r = verify(&log, &opts).unwrap_err();
    assert_eq!(
        r.entry,
        Some(EntryRef {
            index: 2,
            offset: third
        })
    );
    assert!(matches!(
        r.reason,
        RejectReason::Log(EntryError::DigestMismatch { .. })
    ));
}

/// A valid entry (its digest is the hash of its data) whose content is not a canonical
/// measurement: the digest binds the content, the content must still be checked.
#[test]
fn non_canonical_content_is_rejected() {
    let mut ev = Event::layer(Operation::MountLayer, &layer(1));
    ev.content = ev.content.replacen(',', ", ", 1);
    let log = encode_log(14, &[ev]);
    let r = verify(&log, &opts_for(&log, None)).unwrap_err();
    assert_eq!(
        r.entry,
        Some(EntryRef {
            index: 0,
            offset: 0
        })
    );
    assert!(matches!(
        r.reason,
        RejectReason::Measurement(AttestError::NotCanonical { .. })
    ));
    let bad_op = Event {
        operation: "MountImage".into(),
        ..Event::layer(Operation::MountLayer, &layer(1))
    };
    let log = encode_log(14, &[bad_op]);
    assert!(matches!(
        verify(&log, &opts_for(&log, None)).unwrap_err().reason,
        RejectReason::UnknownOperation(_)
    ));
}

#[test]
fn foreign_events_are_replayed_and_reported() {
    let foreign = Event {
        domain: "github.com/confidential-containers".into(),
        operation: "PullImage".into(),
        content: "{\"image\":\"x\"}".into(),
    };
    let mut events = mounts();
    events.insert(1, foreign);
    let mut log = encode_log(14, &events);
    // An entry of another register: counted, not verified.
    log.extend_from_slice(&encode_entry(15, &mounts()[0]));
    let report = verify(&log, &opts_for(&log, Some(refs(&[1, 2, 3])))).unwrap();
    assert_eq!((report.entries, report.other_registers), (5, 1));
    assert!(matches!(
        &report.events[1],
        VerifiedEvent::Foreign { domain, operation, .. }
            if domain == "github.com/confidential-containers" && operation == "PullImage"
    ));
}

/// Builds one entry of register 14 with the given type and digests of `data`.
fn raw_entry(event_type: u32, with_sha256: bool, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&14u32.to_le_bytes());
    b.extend_from_slice(&event_type.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    if with_sha256 {
        b.extend_from_slice(&eventlog::TPM_ALG_SHA256.to_le_bytes());
        b.extend_from_slice(&Sha256::digest(data));
    } else {
        b.extend_from_slice(&eventlog::TPM_ALG_SHA1.to_le_bytes());
        b.extend_from_slice(&[0u8; 20]);
    }
    b.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// A check of a rejection's reason.
type IsReason = fn(&RejectReason) -> bool;

#[test]
fn unverifiable_entries_are_rejected() {
    let first = encode_entry(14, &mounts()[0]);
    let cases: [(Vec<u8>, IsReason); 3] = [
        (raw_entry(0x0d, true, b"data"), |r| {
            matches!(r, RejectReason::NotTagged { event_type: 0x0d })
        }),
        (
            raw_entry(EV_EVENT_TAG, false, &mounts()[0].event_data()),
            |r| matches!(r, RejectReason::NoSha256),
        ),
        (
            raw_entry(EV_EVENT_TAG, true, b"XXXX\x00\x00\x00\x00"),
            |r| matches!(r, RejectReason::NotAael { tag: 0x5858_5858 }),
        ),
    ];
    for (entry, expected) in cases {
        let log = [first.clone(), entry].concat();
        let r = verify(&log, &opts_for(&log, None)).unwrap_err();
        assert_eq!(
            r.entry,
            Some(EntryRef {
                index: 1,
                offset: first.len() as u64
            })
        );
        assert!(expected(&r.reason), "{r}");
    }
}

#[test]
fn register_values() {
    let v = [0xabu8; 32];
    assert_eq!(
        parse_pcr(&format!("{}\n", hex::encode_upper(v))).unwrap(),
        v
    );
    assert_eq!(parse_pcr(&hex::encode(v)).unwrap(), v);
    for bad in [
        "",
        "ab",
        &"g".repeat(64),
        &"a".repeat(65),
        &format!("0x{}", "a".repeat(62)),
    ] {
        assert!(
            matches!(parse_pcr(bad), Err(VerifyError::BadPcr { .. })),
            "{bad}"
        );
    }
}

#[test]
fn an_oversized_log_is_rejected() {
    let big = vec![0u8; eventlog::MAX_LOG_SIZE + 1];
    let r = verify(&big, &opts_for(&[], None)).unwrap_err();
    assert!(matches!(r.reason, RejectReason::LogTooLarge { .. }));
}

#[test]
fn reference_values_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("root_hashes = [\"{}\"]\n", hex::encode([1u8; 32])),
    )
    .unwrap();
    assert_eq!(read_reference_values(&good).unwrap().len(), 1);
    let latin1 = dir.path().join("latin1.toml");
    // "café" in Latin-1: not UTF-8.
    let mut bytes = b"# caf\xe9\n".to_vec();
    bytes.extend_from_slice(format!("root_hashes = [\"{}\"]\n", hex::encode([1u8; 32])).as_bytes());
    std::fs::write(&latin1, bytes).unwrap();
    assert!(matches!(
        read_reference_values(&latin1),
        Err(VerifyError::ReferenceValuesNotUtf8 { .. })
    ));
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; (MAX_REFERENCE_VALUES_SIZE + 1) as usize]).unwrap();
    assert!(matches!(
        read_reference_values(&big),
        Err(VerifyError::ReferenceValuesTooLarge { .. })
    ));
    assert!(matches!(
        read_reference_values(&dir.path().join("missing")),
        Err(VerifyError::Io { .. })
    ));
}

use super::*;

#[test]
fn operations() {
    for op in [Operation::MountLayer, Operation::UnmountLayer] {
        assert_eq!(Operation::parse(op.as_str()), Some(op));
    }
    assert_eq!(Operation::MountLayer.as_str(), "MountLayer");
    assert_eq!(Operation::UnmountLayer.as_str(), "UnmountLayer");
    assert_eq!(Operation::parse("mountlayer"), None);
    assert_eq!(Operation::parse("PullImage"), None);
}

/// The attestation agent's own test vector (`eventlog/mod.rs` `test_event_digest`): the
/// SHA-256 of the tagged event of `domain operation content`.
#[test]
fn digest_matches_the_attestation_agent() {
    let ev = Event {
        domain: "domain".into(),
        operation: "operation".into(),
        content: "content".into(),
    };
    assert_eq!(
        hex::encode(ev.sha256()),
        "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351"
    );
}

#[test]
fn event_data_is_a_tagged_event() {
    let ev = Event {
        domain: "d".into(),
        operation: "o".into(),
        content: "{}".into(),
    };
    assert_eq!(ev.text(), "d o {}");
    let mut expected = b"LEAA".to_vec(); // 0x4141454c little-endian
    expected.extend_from_slice(&6u32.to_le_bytes());
    expected.extend_from_slice(b"d o {}");
    assert_eq!(ev.event_data(), expected);
}

#[test]
fn layer_events() {
    let m = measurement::tests::sample();
    let ev = Event::layer(Operation::UnmountLayer, &m);
    assert_eq!(ev.domain, "github.com/layerpass");
    assert_eq!(ev.operation, "UnmountLayer");
    assert_eq!(ev.content, m.canonical_json());
    assert_eq!(
        ev.text(),
        format!("github.com/layerpass UnmountLayer {}", m.canonical_json())
    );
    assert_eq!(Event::from_text(&ev.text()).unwrap(), ev);
}

#[test]
fn event_text_is_split_as_the_agent_splits_it() {
    let ev = Event::from_text("github.com/confidential-containers PullImage {\"a\": 1}").unwrap();
    assert_eq!(ev.domain, "github.com/confidential-containers");
    assert_eq!(ev.operation, "PullImage");
    assert_eq!(ev.content, "{\"a\": 1}");
    let empty = Event::from_text("d o ").unwrap();
    assert_eq!(empty.content, "");
    for bad in ["", "nospace", "d o", "d  c", " o c", "d o a\nb"] {
        assert!(
            matches!(Event::from_text(bad), Err(AttestError::BadEventText(_))),
            "{bad:?}"
        );
    }
}

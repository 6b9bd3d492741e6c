use super::*;

pub(crate) fn sample() -> LayerMeasurement {
    LayerMeasurement {
        container_id: "web-1".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
        root_hash: "0f".repeat(32),
        hash_algorithm: "sha256".into(),
        salt: "00".repeat(32),
        data_size: 4096 * 3,
        corruption: "eio".into(),
    }
}

#[test]
fn canonical_json_sorts_members_and_has_no_whitespace() {
    let m = sample();
    let expected = format!(
        "{{\"container_id\":\"web-1\",\"corruption\":\"eio\",\"data_size\":12288,\
         \"digest\":\"sha256:{}\",\"hash_algorithm\":\"sha256\",\"root_hash\":\"{}\",\
         \"salt\":\"{}\"}}",
        "ab".repeat(32),
        "0f".repeat(32),
        "00".repeat(32)
    );
    assert_eq!(m.canonical_json(), expected);
    let none = LayerMeasurement {
        digest: None,
        salt: String::new(),
        ..m
    };
    assert!(none.canonical_json().contains(",\"digest\":null,"));
    assert!(none.canonical_json().ends_with(",\"salt\":\"\"}"));
}

#[test]
fn canonical_json_escapes_what_validate_refuses() {
    let m = LayerMeasurement {
        container_id: "a\"b\\c\u{1}\n".into(),
        ..sample()
    };
    assert!(
        m.canonical_json()
            .starts_with(r#"{"container_id":"a\"b\\c\u0001\n","#),
        "{}",
        m.canonical_json()
    );
    assert!(matches!(
        m.validate(),
        Err(AttestError::Field {
            field: "container_id",
            ..
        })
    ));
}

#[test]
fn validate_names_the_field() {
    let cases: Vec<(&str, LayerMeasurement)> = vec![
        (
            "container_id",
            LayerMeasurement {
                container_id: String::new(),
                ..sample()
            },
        ),
        (
            "container_id",
            LayerMeasurement {
                container_id: "ünï".into(),
                ..sample()
            },
        ),
        (
            "container_id",
            LayerMeasurement {
                container_id: "a b".into(),
                ..sample()
            },
        ),
        (
            "digest",
            LayerMeasurement {
                digest: Some("sha256:AB".into()),
                ..sample()
            },
        ),
        (
            "hash_algorithm",
            LayerMeasurement {
                hash_algorithm: "SHA256".into(),
                ..sample()
            },
        ),
        (
            "hash_algorithm",
            LayerMeasurement {
                hash_algorithm: "md5".into(),
                ..sample()
            },
        ),
        (
            "root_hash",
            LayerMeasurement {
                root_hash: "0F".repeat(32),
                ..sample()
            },
        ),
        (
            "root_hash",
            LayerMeasurement {
                root_hash: "0f".repeat(20),
                ..sample()
            },
        ),
        (
            "root_hash",
            LayerMeasurement {
                hash_algorithm: "sha512".into(),
                ..sample()
            },
        ),
        (
            "salt",
            LayerMeasurement {
                salt: "0".into(),
                ..sample()
            },
        ),
        (
            "salt",
            LayerMeasurement {
                salt: "zz".into(),
                ..sample()
            },
        ),
        (
            "salt",
            LayerMeasurement {
                salt: "00".repeat(257),
                ..sample()
            },
        ),
        (
            "data_size",
            LayerMeasurement {
                data_size: MAX_SAFE_INTEGER + 1,
                ..sample()
            },
        ),
        (
            "corruption",
            LayerMeasurement {
                corruption: "restart".into(),
                ..sample()
            },
        ),
    ];
    for (field, m) in cases {
        match m.validate() {
            Err(AttestError::Field { field: f, .. }) => assert_eq!(f, field, "{m:?}"),
            other => panic!("{m:?}: {other:?}"),
        }
    }
    sample().validate().unwrap();
    LayerMeasurement {
        hash_algorithm: "sha1".into(),
        root_hash: "0f".repeat(20),
        data_size: MAX_SAFE_INTEGER,
        salt: "00".repeat(256),
        corruption: "panic_on_corruption".into(),
        ..sample()
    }
    .validate()
    .unwrap();
}

#[test]
fn from_content_reads_back_its_canonical_json() {
    let m = sample();
    assert_eq!(
        LayerMeasurement::from_content(&m.canonical_json()).unwrap(),
        m
    );
    let none = LayerMeasurement {
        digest: None,
        ..sample()
    };
    assert_eq!(
        LayerMeasurement::from_content(&none.canonical_json()).unwrap(),
        none
    );
}

#[test]
fn from_content_refuses_non_canonical_text() {
    let good = sample().canonical_json();
    let not_canonical = [
        // whitespace
        good.replacen(',', ", ", 1),
        format!("{good}\n"),
        format!(" {good}"),
        // key order
        good.replacen(
            "\"container_id\":\"web-1\",\"corruption\":\"eio\"",
            "\"corruption\":\"eio\",\"container_id\":\"web-1\"",
            1,
        ),
        // number forms
        good.replacen("12288", "12288.0", 1),
        good.replacen("12288", "1.2288e4", 1),
        // a needless escape
        good.replacen("web-1", "web\\u002d1", 1),
    ];
    for text in &not_canonical {
        let e = LayerMeasurement::from_content(text).unwrap_err();
        assert!(
            matches!(
                e,
                AttestError::NotCanonical { .. } | AttestError::NotJson(_)
            ),
            "{text}: {e:?}"
        );
    }
    // The ones serde reads are refused for not being canonical.
    assert!(matches!(
        LayerMeasurement::from_content(&not_canonical[0]),
        Err(AttestError::NotCanonical { .. })
    ));
    assert!(matches!(
        LayerMeasurement::from_content(&not_canonical[3]),
        Err(AttestError::NotCanonical { .. })
    ));
    assert!(matches!(
        LayerMeasurement::from_content(&not_canonical[6]),
        Err(AttestError::NotCanonical { .. })
    ));
}

#[test]
fn from_content_refuses_missing_unknown_and_duplicate_members() {
    let good = sample().canonical_json();
    let missing_digest = good.replacen(
        &format!("\"digest\":\"sha256:{}\",", "ab".repeat(32)),
        "",
        1,
    );
    let unknown = good.replacen("{", "{\"aaa\":1,", 1);
    let duplicate = good.replacen("{", "{\"container_id\":\"x\",", 1);
    for text in [
        missing_digest,
        unknown,
        duplicate,
        "[]".into(),
        "null".into(),
        String::new(),
    ] {
        assert!(
            matches!(
                LayerMeasurement::from_content(&text),
                Err(AttestError::NotJson(_) | AttestError::NotCanonical { .. })
            ),
            "{text}"
        );
    }
}

#[test]
fn from_content_validates_and_bounds() {
    let bad = LayerMeasurement {
        root_hash: "0F".repeat(32),
        ..sample()
    };
    assert!(matches!(
        LayerMeasurement::from_content(&bad.canonical_json()),
        Err(AttestError::Field {
            field: "root_hash",
            ..
        })
    ));
    let long = " ".repeat(MAX_CONTENT_LEN + 1);
    assert!(matches!(
        LayerMeasurement::from_content(&long),
        Err(AttestError::ContentTooLong { .. })
    ));
}

#[test]
fn corruption_names() {
    assert_eq!(corruption_name(CorruptionMode::Eio), "eio");
    assert_eq!(
        corruption_name(CorruptionMode::Restart),
        "restart_on_corruption"
    );
    assert_eq!(
        corruption_name(CorruptionMode::Panic),
        "panic_on_corruption"
    );
}

use super::*;

#[test]
fn the_shared_table() {
    for (value, good) in VECTORS {
        let parsed = Digest::parse(value);
        assert_eq!(parsed.is_ok(), *good, "{value:?}: {parsed:?}");
        if let Ok(d) = parsed {
            assert_eq!(d.to_string(), *value);
            assert_eq!(d.hex().len(), d.algorithm().hex_len());
        }
    }
}

#[test]
fn round_trips() {
    let d = Digest::from_bytes(DigestAlgorithm::Sha256, &[0xab; 32]).unwrap();
    assert_eq!(d.hex(), "ab".repeat(32));
    assert_eq!(d.algorithm().name(), "sha256");
    assert!(Digest::from_bytes(DigestAlgorithm::Sha512, &[0xab; 32]).is_err());
    assert_eq!(Digest::sha256(&[0xab; 32]), d);
    assert_eq!(Digest::sha512(&[1; 64]).hex(), "01".repeat(64));
    let json = format!("\"{d}\"");
    let back: Digest = serde_json_like(&json);
    assert_eq!(back, d);
}

/// A minimal JSON string decode through serde's value deserializer.
fn serde_json_like(json: &str) -> Digest {
    use serde::de::IntoDeserializer;
    let s = json.trim_matches('"').to_owned();
    let de: serde::de::value::StringDeserializer<serde::de::value::Error> = s.into_deserializer();
    Digest::deserialize(de).unwrap()
}

#[test]
fn errors_name_the_rule() {
    let e = Digest::parse("sha384:00").unwrap_err().to_string();
    assert!(
        e.contains("sha384") && e.contains("sha256 or sha512"),
        "{e}"
    );
    let e = Digest::parse(&format!("sha256:{}", "A".repeat(64)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("64 lower-case hex"), "{e}");
}

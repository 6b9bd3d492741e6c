use super::*;

fn hash(n: u8) -> String {
    hex::encode([n; 32])
}

fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

#[test]
fn root_hashes_for_any_digest() {
    let refs = ReferenceValues::parse(&format!(
        "root_hashes = [\"{}\", \"{}\"]\n",
        hash(1).to_uppercase(),
        hex::encode([2u8; 20])
    ))
    .unwrap();
    assert_eq!(refs.len(), 2);
    refs.allows(&hash(1), Some(&digest(9))).unwrap();
    refs.allows(&hash(1), None).unwrap();
    assert_eq!(
        refs.allows(&hash(3), None).unwrap_err().to_string(),
        format!("root hash {} is not in the reference values", hash(3))
    );
}

#[test]
fn bound_digests() {
    let text = format!(
        "[[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n[[layers]]\nroot_hash = \"{}\"\n\
         digest = \"{}\"\n[[layers]]\nroot_hash = \"{}\"\n",
        hash(1),
        digest(100),
        hash(1),
        digest(101),
        hash(2)
    );
    let refs = ReferenceValues::parse(&text).unwrap();
    assert_eq!(refs.len(), 2);
    refs.allows(&hash(1), Some(&digest(100))).unwrap();
    refs.allows(&hash(1), Some(&digest(101))).unwrap();
    refs.allows(&hash(2), Some(&digest(7))).unwrap();
    let e = refs.allows(&hash(1), Some(&digest(102))).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "root hash {} is listed for {}, {} only, not for this digest",
            hash(1),
            digest(100),
            digest(101)
        )
    );
    let e = refs.allows(&hash(1), None).unwrap_err();
    assert!(
        e.to_string().ends_with("not for a layer of unknown digest"),
        "{e}"
    );
}

#[test]
fn any_digest_wins_over_a_binding() {
    let text = format!(
        "root_hashes = [\"{}\"]\n[[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n",
        hash(1),
        hash(1),
        digest(100)
    );
    let refs = ReferenceValues::parse(&text).unwrap();
    refs.allows(&hash(1), Some(&digest(5))).unwrap();
}

#[test]
fn bad_files_name_the_entry() {
    let cases = [
        ("", "no root hashes listed".to_owned()),
        (
            "root_hashes = [\"xyz\"]",
            "root_hashes: root hash \"xyz\" is not 40, 64 or 128 hex digits".to_owned(),
        ),
        (
            "[[layers]]\nroot_hash = \"00\"",
            "layers[0]: root hash \"00\" is not 40, 64 or 128 hex digits".to_owned(),
        ),
    ];
    for (text, message) in cases {
        assert_eq!(
            ReferenceValues::parse(text).unwrap_err().to_string(),
            message
        );
    }
    let e = ReferenceValues::parse(&format!(
        "[[layers]]\nroot_hash = \"{}\"\ndigest = \"sha256:AB\"",
        hash(1)
    ))
    .unwrap_err();
    assert!(
        matches!(e, ReferenceValuesError::BadDigest { ref origin, .. } if origin == "layers[0]")
    );
    for bad in ["other = 1", "root_hashes = [", "[[layers]]\ndigest = \"x\""] {
        assert!(
            matches!(
                ReferenceValues::parse(bad),
                Err(ReferenceValuesError::Toml(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn allow_and_iterate() {
    let mut refs = ReferenceValues::default();
    assert!(refs.is_empty());
    refs.allow(&hash(2).to_uppercase());
    refs.allow_for(&hash(1), &digest(100));
    refs.allow_for(&hash(2), &digest(100));
    let listed: Vec<(String, Option<Vec<String>>)> = refs
        .iter()
        .map(|(h, d)| (h.to_owned(), d.map(|d| d.iter().cloned().collect())))
        .collect();
    assert_eq!(
        listed,
        vec![(hash(1), Some(vec![digest(100)])), (hash(2), None)]
    );
}

#[test]
fn toml_round_trip() {
    let mut refs = ReferenceValues::default();
    refs.allow(&hash(3));
    refs.allow(&hash(4));
    refs.allow_for(&hash(1), &digest(100));
    refs.allow_for(&hash(1), &digest(101));
    let text = refs.to_toml();
    assert_eq!(ReferenceValues::parse(&text).unwrap(), refs, "{text}");
    let only_bound = {
        let mut r = ReferenceValues::default();
        r.allow_for(&hash(1), &digest(100));
        r
    };
    let text = only_bound.to_toml();
    assert!(text.starts_with("root_hashes = []\n"), "{text}");
    assert_eq!(ReferenceValues::parse(&text).unwrap(), only_bound);
}

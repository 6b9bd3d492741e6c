#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

/// A sha256 document; its digests below were computed with `sha256sum`, `sha384sum` and
/// `sha512sum` of the same bytes in a file.
fn doc(algorithm: &str) -> String {
    format!(
        "version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n\n[data]\n\"layerpass.toml\" = '''\n\
         root_hashes = [\"{}\"]\n'''\n",
        "ab".repeat(32)
    )
}

const SHA256: &str = "f208043d910f77bbae410fe8d2a073b312f7d8e76e6c14374201feb0355a6389";
/// python3: sha256(b"\0" * 32 + bytes.fromhex(SHA256))
const PCR8: &str = "e6604060c83fc03bd2deba6a609924aaececd33ff2045070e8fc2ec3300b9318";

#[test]
fn digest_is_the_hash_of_the_raw_bytes() {
    let raw = doc("sha256");
    let d = Initdata::parse(raw.as_bytes()).unwrap();
    assert_eq!(hex::encode(d.digest()), SHA256);
    assert_eq!(d.digest_string(), format!("sha256:{SHA256}"));
    assert_eq!(d.algorithm(), InitdataAlgorithm::Sha256);
    assert_eq!(
        d.get(LAYERPASS_KEY).unwrap(),
        format!("root_hashes = [\"{}\"]\n", "ab".repeat(32))
    );
    // the same bytes under the other algorithms: sha384sum and sha512sum of the file
    assert_eq!(
        hex::encode(digest(raw.as_bytes(), InitdataAlgorithm::Sha384)),
        "eb572dc4398eb1986899585dbda7719f7fac8f87431c69701b54a6a72ec7b7fe\
         a8210fc01de9d04ec2c8fdaa7c5a8ad5"
    );
    assert_eq!(
        hex::encode(digest(raw.as_bytes(), InitdataAlgorithm::Sha512)),
        "3e0f650cf712d26c1e2902b6db04bd3ebad9bfb5407f89aa38c6f546d3cbd6a8\
         1d83b309335ef1dd62b183f834078baad9c11d2ed196ed27be5d8e94f5b60eb6"
    );
    // the document's own algorithm decides
    let d384 = Initdata::parse(doc("sha384").as_bytes()).unwrap();
    assert_eq!(d384.digest().len(), 48);
    assert_eq!(
        d384.digest(),
        &digest(doc("sha384").as_bytes(), InitdataAlgorithm::Sha384)[..]
    );
}

#[test]
fn no_canonicalisation_a_space_changes_the_digest() {
    let a = Initdata::parse(doc("sha256").as_bytes()).unwrap();
    let spaced = doc("sha256").replace("version = ", "version  = ");
    let b = Initdata::parse(spaced.as_bytes()).unwrap();
    assert_eq!(a.data(), b.data());
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn tee_field_forms() {
    let d = Initdata::parse(doc("sha256").as_bytes()).unwrap();
    let sha = hex::decode(SHA256).unwrap();
    assert_eq!(TeeField::SnpHostData.value(d.digest()).unwrap(), sha);
    let tdx = TeeField::TdxMrConfigId.value(d.digest()).unwrap();
    assert_eq!((&tdx[..32], &tdx[32..]), (&sha[..], &[0_u8; 16][..]));
    let cca = TeeField::CcaPersonalization.value(d.digest()).unwrap();
    assert_eq!((&cca[..32], &cca[32..]), (&sha[..], &[0_u8; 32][..]));
    assert_eq!(
        hex::encode(TeeField::TpmPcr8.value(d.digest()).unwrap()),
        PCR8
    );
    // a sha512 digest is truncated at the end for SNP and TDX, whole for CCA
    let long: Vec<u8> = (0..64).collect();
    assert_eq!(TeeField::SnpHostData.value(&long).unwrap(), &long[..32]);
    assert_eq!(TeeField::TdxMrConfigId.value(&long).unwrap(), &long[..48]);
    assert_eq!(TeeField::CcaPersonalization.value(&long).unwrap(), long);
    let err = TeeField::TpmPcr8.value(&long[..48]).unwrap_err();
    assert!(err.contains("48-byte"), "{err}");
    assert_eq!(adjust(&[1, 2, 3], 2), [1, 2]);
    assert_eq!(adjust(&[1], 3), [1, 0, 0]);
}

#[test]
fn refusals_name_what_is_wrong() {
    let cases: [(String, &str); 9] = [
        (doc("sha1"), "algorithm \"sha1\""),
        (doc("SHA256"), "algorithm \"SHA256\""),
        (doc("sha256").replace("0.1.0", "0.2.0"), "version \"0.2.0\""),
        (
            doc("sha256").replace("version = \"0.1.0\"\n", ""),
            "missing field `version`",
        ),
        (
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\n".into(),
            "missing field `data`",
        ),
        (
            format!("extra = 1\n{}", doc("sha256")),
            "unknown field `extra`",
        ),
        (
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nk = 1\n".into(),
            "invalid type",
        ),
        (
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nk = \"a\"\nk = \"b\"\n".into(),
            "duplicate key",
        ),
        ("version = ".into(), "not a valid initdata TOML"),
    ];
    for (text, needle) in cases {
        let err = Initdata::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    let err = Initdata::parse(b"version = \"\xff\"").unwrap_err();
    assert_eq!(err, InitdataError::NotUtf8 { offset: 11 });
    let mut big = doc("sha256").into_bytes();
    big.resize(MAX_BYTES + 1, b'\n');
    assert_eq!(
        Initdata::parse(&big).unwrap_err(),
        InitdataError::TooLarge {
            size: MAX_BYTES + 1,
            limit: MAX_BYTES
        }
    );
    // exactly at the limit is read
    big.truncate(MAX_BYTES);
    assert!(Initdata::parse(&big).is_ok());
    let d = Initdata::parse(doc("sha256").as_bytes()).unwrap();
    assert_eq!(
        d.require("aa.toml").unwrap_err().to_string(),
        "initdata has no \"aa.toml\" under [data]"
    );
}

#[test]
fn render_round_trips_every_kind_of_value() {
    let values = [
        "",
        "root_hashes = [\"ab\"]\n",
        "\nleading newline",
        "tab\there",
        "ends with a quote'",
        "has ''' inside",
        "cr\r\nlf",
        "nul \u{0} del \u{7f} esc \u{1b}",
        "\"quoted\" and \\ backslash",
        "unicode é ✓",
    ];
    for algorithm in InitdataAlgorithm::ALL {
        let data: BTreeMap<String, String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("key.{i} \"q\""), (*v).to_owned()))
            .chain([(LAYERPASS_KEY.to_owned(), "root_hashes = []\n".to_owned())])
            .collect();
        let text = render(algorithm, &data);
        let back = Initdata::parse(text.as_bytes()).unwrap();
        assert_eq!(back.data(), &data, "{text}");
        assert_eq!(back.algorithm(), algorithm);
        assert_eq!(back.digest(), &algorithm.hash(text.as_bytes())[..]);
    }
    // embedded TOML stays readable
    let data = BTreeMap::from([("aa.toml".to_owned(), "[x]\ny = 1\n".to_owned())]);
    assert_eq!(
        render(InitdataAlgorithm::Sha256, &data),
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"aa.toml\" = '''\n[x]\ny = 1\n'''\n"
    );
}

#[test]
fn algorithm_names() {
    for a in InitdataAlgorithm::ALL {
        assert_eq!(a.name().parse::<InitdataAlgorithm>().unwrap(), a);
        assert_eq!(a.hash(b"").len(), a.digest_size());
    }
    assert!("sha1".parse::<InitdataAlgorithm>().is_err());
}

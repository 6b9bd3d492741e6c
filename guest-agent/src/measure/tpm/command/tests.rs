//! Golden bytes for both commands (written out from Part 3's command tables, not from the
//! encoder) and every way a response can be malformed.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const DIGEST: [u8; 32] = [0xaa; 32];
const AA32: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const VALUE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn pcr_extend_golden_bytes() {
    let expected = hex(&format!(
        "8002 00000041 00000182 \
         0000000e \
         00000009 40000009 0000 01 0000 \
         00000001 000b {AA32}"
    ));
    assert_eq!(pcr_extend(14, &DIGEST), expected);
    assert_eq!(expected.len(), 65);
    assert_eq!(&pcr_extend(0, &DIGEST)[10..14], &[0, 0, 0, 0]);
    assert_eq!(&pcr_extend(23, &DIGEST)[10..14], &[0, 0, 0, 23]);
}

#[test]
fn pcr_read_golden_bytes() {
    assert_eq!(
        pcr_read(14),
        hex("8001 00000014 0000017e 00000001 000b 03 004000")
    );
    assert_eq!(pcr_read(0)[17..], [1, 0, 0]);
    assert_eq!(pcr_read(7)[17..], [0x80, 0, 0]);
    assert_eq!(pcr_read(16)[17..], [0, 0, 1]);
    assert_eq!(pcr_read(23)[17..], [0, 0, 0x80]);
}

const EXTEND_OK: &str = "8002 00000013 00000000 00000000 0000 01 0000";

#[test]
fn pcr_extend_response_ok() {
    parse_pcr_extend(&hex(EXTEND_OK)).unwrap();
    // The session attributes are the TPM's to set.
    parse_pcr_extend(&hex("8002 00000013 00000000 00000000 0000 00 0000")).unwrap();
}

#[test]
fn pcr_extend_locality_is_named() {
    let err = parse_pcr_extend(&hex("8001 0000000a 00000907")).unwrap_err();
    assert_eq!(err, ResponseError::Failed { code: RC_LOCALITY });
    let text = err.to_string();
    assert!(
        text.starts_with("the TPM answered TPM_RC_LOCALITY (0x907): the PCR does not accept"),
        "{text}"
    );
    // Other codes are named without the hint; format-1 codes by their error number.
    let value_handle1 = parse_pcr_extend(&hex("8001 0000000a 00000184")).unwrap_err();
    assert_eq!(
        value_handle1.to_string(),
        "the TPM answered TPM_RC_VALUE (0x184)"
    );
    let retry = parse_pcr_extend(&hex("8001 0000000a 00000922")).unwrap_err();
    assert_eq!(retry.to_string(), "the TPM answered TPM_RC_RETRY (0x922)");
    let rm = parse_pcr_extend(&hex("8001 0000000a 000b0084")).unwrap_err();
    assert_eq!(rm.to_string(), "the TPM answered 0xb0084");
}

#[test]
fn malformed_extend_responses_are_refused() {
    use ResponseError as E;
    let cases: [(&str, ResponseError); 9] = [
        (
            "",
            E::Truncated {
                len: 0,
                field: "header",
            },
        ),
        (
            "8002 00000013 0000",
            E::Truncated {
                len: 8,
                field: "header",
            },
        ),
        // The size field disagrees with what was received.
        (
            "8002 00000014 00000000 00000000 0000 01 0000",
            E::SizeMismatch {
                declared: 20,
                received: 19,
            },
        ),
        // A success under the wrong tag.
        (
            "8001 00000013 00000000 00000000 0000 01 0000",
            E::Tag {
                found: 0x8001,
                expected: 0x8002,
            },
        ),
        // An error with a body, or under the sessions tag.
        ("8001 0000000b 00000907 00", E::Trailing { extra: 1 }),
        (
            "8002 0000000a 00000907",
            E::Tag {
                found: 0x8002,
                expected: 0x8001,
            },
        ),
        // Parameters where there are none.
        (
            "8002 00000017 00000000 00000004 00000000 0000 01 0000",
            E::Field {
                field: "parameterSize",
                found: 4,
                expected: 0,
            },
        ),
        // A nonce in a password session's acknowledgement.
        (
            "8002 00000014 00000000 00000000 0001 ff 01 0000",
            E::Field {
                field: "nonceTPM size",
                found: 1,
                expected: 0,
            },
        ),
        (
            "8002 00000014 00000000 00000000 0000 01 0000 00",
            E::Trailing { extra: 1 },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(parse_pcr_extend(&hex(bytes)), Err(expected), "{bytes}");
    }
    // A response cut inside the authorization area.
    assert_eq!(
        parse_pcr_extend(&hex("8002 0000000f 00000000 00000000 00")),
        Err(E::Truncated {
            len: 15,
            field: "nonceTPM size"
        })
    );
}

fn read_ok(select: &str, count: &str, value: &str) -> String {
    read_sized(select, count, "0020", value)
}

fn read_sized(select: &str, count: &str, size: &str, value: &str) -> String {
    let body = format!("00000005 00000001 000b 03 {select} {count} {size} {value}");
    let len = 10 + hex(&body).len();
    format!("8001 {len:08x} 00000000 {body}")
}

#[test]
fn pcr_read_response_ok() {
    let got = parse_pcr_read(14, &hex(&read_ok("004000", "00000001", VALUE))).unwrap();
    assert_eq!(got.to_vec(), hex(VALUE));
}

#[test]
fn malformed_read_responses_are_refused() {
    use ResponseError as E;
    // Another PCR than the one asked for.
    let err = parse_pcr_read(14, &hex(&read_ok("008000", "00000001", VALUE))).unwrap_err();
    assert_eq!(
        err,
        E::Field {
            field: "pcrSelectionOut pcrSelect",
            found: 0x8000,
            expected: 0x4000
        }
    );
    // Two digests.
    let err = parse_pcr_read(14, &hex(&read_ok("004000", "00000002", VALUE))).unwrap_err();
    assert_eq!(
        err,
        E::Field {
            field: "pcrValues count",
            found: 2,
            expected: 1
        }
    );
    // No SHA-256 bank: an empty selection and no digest.
    let empty = "8001 00000016 00000000 00000005 00000000 00000000";
    assert_eq!(
        parse_pcr_read(14, &hex(empty)),
        Err(E::Field {
            field: "pcrSelectionOut count",
            found: 0,
            expected: 1
        })
    );
    // Another bank.
    let sha1 = format!(
        "8001 00000032 00000000 00000005 00000001 0004 03 004000 00000001 0014 {}",
        "11".repeat(20)
    );
    assert_eq!(
        parse_pcr_read(14, &hex(&sha1)),
        Err(E::Field {
            field: "pcrSelectionOut hash",
            found: 4,
            expected: 0xb
        })
    );
    // A short digest, a cut response, a trailing byte.
    let short = read_sized("004000", "00000001", "001f", &VALUE[2..]);
    assert_eq!(
        parse_pcr_read(14, &hex(&short)),
        Err(E::Field {
            field: "pcrValues digest size",
            found: 31,
            expected: 32
        })
    );
    let full = hex(&read_ok("004000", "00000001", VALUE));
    let mut cut = full[..full.len() - 1].to_vec();
    cut[5] -= 1;
    assert_eq!(
        parse_pcr_read(14, &cut),
        Err(E::Truncated {
            len: 61,
            field: "pcrValues digest"
        })
    );
    let mut long = full.clone();
    long.push(0);
    long[5] += 1;
    assert_eq!(parse_pcr_read(14, &long), Err(E::Trailing { extra: 1 }));
    // An error answer.
    assert_eq!(
        parse_pcr_read(14, &hex("8001 0000000a 00000101")),
        Err(E::Failed {
            code: ResponseCode(0x101)
        })
    );
}

//! The subset of RFC 8785 (JSON Canonicalization Scheme) a measurement needs: one object of
//! strings, safe integers and `null`, members sorted by their names' UTF-16 code units, no
//! whitespace, strings escaped as RFC 8785 §3.2.2.2 says.
//!
//! Written here rather than taken from a crate: the objects are flat and fixed, the whole
//! encoder is the escaping rule and a sort, and a dependency would bring a generic number
//! formatter (ECMAScript `Number.prototype.toString`) that integers below 2^53 do not need.

use std::fmt::Write as _;

/// Largest integer a JSON number holds exactly in an IEEE 754 double (2^53 − 1): JCS writes
/// numbers as doubles, so larger ones would not survive canonicalisation.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A member value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string.
    Str(&'a str),
    /// An integer no larger than [`MAX_SAFE_INTEGER`] (the caller checks).
    Int(u64),
    /// `null`.
    Null,
}

/// Appends `s` as a JSON string: `"` and `\` escaped with a backslash; U+0008, U+0009,
/// U+000A, U+000C and U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; the other controls below
/// U+0020 as `\u00xx` (lower-case hex); everything else, DEL and non-ASCII included, as is.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                // Writing into a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The canonical text of an object with `members` (names must be distinct).
#[must_use]
pub fn object(members: &[(&str, Value<'_>)]) -> String {
    let mut sorted: Vec<&(&str, Value<'_>)> = members.iter().collect();
    sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut out = String::from("{");
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, name);
        out.push(':');
        match value {
            Value::Str(s) => write_string(&mut out, s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Null => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_follow_rfc_8785() {
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            string("\u{8}\t\n\u{c}\r"),
            r#""\b\t\n\f\r""#,
            "the five short escapes"
        );
        assert_eq!(string("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        // Not escaped: `/`, DEL, non-ASCII (RFC 8785 writes them as they are).
        assert_eq!(string("/\u{7f}é€"), "\"/\u{7f}é€\"");
    }

    #[test]
    fn members_sorted_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: "\u{20ac}" (U+20AC) sorts before "\u{1f600}" (a
        // surrogate pair, 0xD83D...) in UTF-16, the other way round in UTF-8 or by scalar.
        let text = object(&[
            ("\u{1f600}", Value::Int(1)),
            ("\u{20ac}", Value::Int(2)),
            ("b", Value::Null),
            ("a", Value::Str("x")),
            ("aa", Value::Int(0)),
        ]);
        assert_eq!(
            text,
            "{\"a\":\"x\",\"aa\":0,\"b\":null,\"\u{20ac}\":2,\"\u{1f600}\":1}"
        );
    }

    #[test]
    fn integers_are_plain_decimals() {
        assert_eq!(
            object(&[("n", Value::Int(MAX_SAFE_INTEGER))]),
            "{\"n\":9007199254740991}"
        );
        assert_eq!(object(&[]), "{}");
    }
}

//! Extended attributes: the kernel's name-prefix indexes, on-disk entries, and the PAX
//! records (`SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`) that carry them in a tar.

use base64::Engine;

/// One xattr, full name (`user.foo`) and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// Name prefixes with a built-in index (`EROFS_XATTR_INDEX_*`), longest match first where
/// one prefix extends another.
const PREFIXES: [(&[u8], u8); 6] = [
    (b"system.posix_acl_access", 2),
    (b"system.posix_acl_default", 3),
    (b"user.", 1),
    (b"trusted.", 4),
    (b"lustre.", 5),
    (b"security.", 6),
];

/// Splits a full name into the prefix index and the stored suffix, or `None` when no
/// index covers it (EROFS on Linux 5.4 cannot store it).
pub fn split_name(name: &[u8]) -> Option<(u8, &[u8])> {
    PREFIXES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(prefix, index)| (*index, &name[prefix.len()..]))
}

/// Bytes of one on-disk `erofs_xattr_entry` with its name and value, padded to 4.
pub fn entry_size(name: &[u8], value: &[u8]) -> u64 {
    let suffix = split_name(name).map_or(name.len(), |(_, s)| s.len());
    (4 + suffix as u64 + value.len() as u64).next_multiple_of(4)
}

/// Appends one entry, padded to 4 bytes. Names and values were validated on input.
pub fn encode_entry(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let (index, suffix) = split_name(name).unwrap_or((0, name));
    let start = out.len();
    out.push((suffix.len() & 0xff) as u8);
    out.push(index);
    out.extend_from_slice(&((value.len() & 0xffff) as u16).to_le_bytes());
    out.extend_from_slice(suffix);
    out.extend_from_slice(value);
    let padded = start + (out.len() - start).next_multiple_of(4);
    out.resize(padded, 0);
}

/// Why a name/value pair cannot be stored, if it cannot.
pub fn check(name: &[u8], value: &[u8]) -> Result<(), String> {
    let Some((index, suffix)) = split_name(name) else {
        return Err(
            "has a namespace EROFS cannot store (user., trusted., security., \
                    system.posix_acl_access/default, lustre.)"
                .to_owned(),
        );
    };
    if (index == 2 || index == 3) && !suffix.is_empty() {
        return Err("has a namespace EROFS cannot store".to_owned());
    }
    if suffix.len() > 255 {
        return Err(format!(
            "name is {} bytes after its prefix; at most 255 fit",
            suffix.len()
        ));
    }
    if value.len() > usize::from(u16::MAX) {
        return Err(format!("value is {} bytes; at most 65535 fit", value.len()));
    }
    Ok(())
}

/// A PAX record that carries an xattr, decoded: `SCHILY.xattr.NAME` (raw value) or
/// `LIBARCHIVE.xattr.URLENCODED-NAME` (base64 value). `Ok(None)` for other keys.
pub fn from_pax(key: &[u8], value: &[u8]) -> Result<Option<Xattr>, String> {
    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
        return Ok(Some((name.to_vec(), value.to_vec())));
    }
    if let Some(encoded) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
        let name = percent_decode(encoded)?;
        let trimmed: Vec<u8> = value
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let value = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(
                trimmed
                    .strip_suffix(b"==")
                    .or_else(|| trimmed.strip_suffix(b"="))
                    .unwrap_or(&trimmed),
            )
            .map_err(|e| format!("value is not base64: {e}"))?;
        return Ok(Some((name, value)));
    }
    Ok(None)
}

fn percent_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or("truncated %-escape in the name")?;
            let text = std::str::from_utf8(hex).map_err(|_| "bad %-escape in the name")?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| "bad %-escape in the name")?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_map_to_kernel_indexes() {
        assert_eq!(split_name(b"user.foo"), Some((1, &b"foo"[..])));
        assert_eq!(
            split_name(b"trusted.overlay.opaque"),
            Some((4, &b"overlay.opaque"[..]))
        );
        assert_eq!(
            split_name(b"security.capability"),
            Some((6, &b"capability"[..]))
        );
        assert_eq!(split_name(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(split_name(b"system.nfs4_acl"), None);
        assert!(check(b"system.nfs4_acl", b"").is_err());
        assert!(check(b"system.posix_acl_access", b"x").is_ok());
    }

    #[test]
    fn entries_are_padded_to_four_bytes() {
        let mut out = Vec::new();
        encode_entry(b"trusted.bar", b"baz", &mut out);
        assert_eq!(out, [3, 4, 3, 0, b'b', b'a', b'r', b'b', b'a', b'z', 0, 0]);
        assert_eq!(entry_size(b"trusted.bar", b"baz"), 12);
    }

    #[test]
    fn pax_records_decode() {
        assert_eq!(
            from_pax(b"SCHILY.xattr.user.a", b"v").unwrap(),
            Some((b"user.a".to_vec(), b"v".to_vec()))
        );
        assert_eq!(
            from_pax(b"LIBARCHIVE.xattr.user.a%3Db", b"aGVsbG8=").unwrap(),
            Some((b"user.a=b".to_vec(), b"hello".to_vec()))
        );
        assert_eq!(from_pax(b"mtime", b"1").unwrap(), None);
        assert!(from_pax(b"LIBARCHIVE.xattr.user.x", b"!!").is_err());
    }
}

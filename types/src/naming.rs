//! Names that cross between the agents: container ids, virtio-blk serials, GPT partition
//! names, and the rule that names a layer's partition.

use crate::{Digest, RootHash, TypeError};

/// Longest container id accepted (it becomes a directory name and a log field).
pub const MAX_CONTAINER_ID_LEN: usize = 128;
/// virtio-blk serials are at most 20 bytes (`VIRTIO_BLK_ID_BYTES`).
pub const MAX_SERIAL_LEN: usize = 20;
/// GPT partition names are at most 36 UTF-16 code units.
pub const MAX_PARTITION_NAME_LEN: usize = 36;
/// The prefix of every layer partition's name.
pub const PARTITION_PREFIX: &str = "lp-";
/// The serial of a composite disk when the caller names none.
pub const DEFAULT_COMPOSITE_SERIAL: &str = "lp-composite";

/// What names a layer's partition: the hex of its diff ID when known, else of its root
/// hash; `None` when neither is known.
#[must_use]
pub fn identity_hex(diff_id: Option<&Digest>, root_hash: Option<&RootHash>) -> Option<String> {
    diff_id
        .map(|d| d.hex().to_owned())
        .or_else(|| root_hash.map(RootHash::to_hex))
}

/// A layer's GPT partition name on a composite disk: `lp-` + the first 32 hex digits of
/// its diff ID when known, else of its root hash ([`identity_hex`]). One rule, used by the
/// disk builder and the plan builder; `None` when neither is known.
#[must_use]
pub fn partition_name(diff_id: Option<&Digest>, root_hash: Option<&RootHash>) -> Option<String> {
    identity_hex(diff_id, root_hash).map(|hex| partition_name_of_hex(&hex))
}

/// `lp-` + the first 32 of `hex`'s digits.
#[must_use]
pub fn partition_name_of_hex(hex: &str) -> String {
    let n = hex.char_indices().nth(32).map_or(hex.len(), |(i, _)| i);
    format!("{PARTITION_PREFIX}{}", &hex[..n])
}

/// Checks a container id: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters.
///
/// # Errors
/// [`TypeError::BadName`] naming the rule.
pub fn validate_container_id(id: &str) -> Result<(), TypeError> {
    let bad = |reason: String| TypeError::BadName {
        what: "container_id",
        value: id.to_owned(),
        reason,
    };
    if id.is_empty() {
        return Err(bad("is empty".into()));
    }
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(bad(format!(
            "is {} characters long, at most {MAX_CONTAINER_ID_LEN} allowed",
            id.len()
        )));
    }
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        return Err(bad("must match [A-Za-z0-9][A-Za-z0-9_.-]*".into()));
    }
    Ok(())
}

/// Checks a virtio-blk serial: 1 to 20 bytes of printable ASCII without spaces or `/`.
///
/// # Errors
/// [`TypeError::BadName`] naming the rule.
pub fn validate_serial(serial: &str) -> Result<(), TypeError> {
    let bad = |reason: String| TypeError::BadName {
        what: "disk serial",
        value: serial.to_owned(),
        reason,
    };
    if serial.is_empty() {
        return Err(bad("is empty".into()));
    }
    if serial.len() > MAX_SERIAL_LEN {
        return Err(bad(format!(
            "is {} bytes, virtio-blk serials have at most {MAX_SERIAL_LEN}",
            serial.len()
        )));
    }
    if !serial.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(bad("must be printable ASCII without spaces or '/'".into()));
    }
    Ok(())
}

/// Checks a GPT partition name as a plan may give it: 1 to 36 UTF-16 units, no control
/// characters, no `=` (the uevent's `PARTNAME=` must stay unambiguous).
///
/// # Errors
/// [`TypeError::BadName`] naming the rule.
pub fn validate_partition_name(name: &str) -> Result<(), TypeError> {
    let bad = |reason: String| TypeError::BadName {
        what: "partition name",
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("is empty".into()));
    }
    if name.encode_utf16().count() > MAX_PARTITION_NAME_LEN {
        return Err(bad(format!(
            "is longer than GPT's {MAX_PARTITION_NAME_LEN} characters"
        )));
    }
    if name.chars().any(|c| c.is_control() || c == '=') {
        return Err(bad("has control characters or '='".into()));
    }
    Ok(())
}

/// Longest rootfs mount point a plan may name (bytes).
pub const MAX_MOUNT_POINT_LEN: usize = 1024;

/// Checks a plan's rootfs mount point: a path **relative** to the guest agent's rootfs
/// root, made of plain names (no leading `/`, no `.`, `..` or empty components, no NUL,
/// no control characters), at most [`MAX_MOUNT_POINT_LEN`] bytes. The guest resolves it
/// beneath its root without following symlinks or crossing mounts; this is the shape
/// check both agents share.
///
/// # Errors
/// [`TypeError::BadName`] naming the rule.
pub fn validate_mount_point(path: &str) -> Result<(), TypeError> {
    let bad = |reason: String| TypeError::BadName {
        what: "mount_point",
        value: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(bad("is empty".into()));
    }
    if path.len() > MAX_MOUNT_POINT_LEN {
        return Err(bad(format!(
            "is {} bytes, at most {MAX_MOUNT_POINT_LEN} allowed",
            path.len()
        )));
    }
    if path.starts_with('/') {
        return Err(bad(
            "is absolute: it must be relative to the guest agent's rootfs root".into(),
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("has control characters".into()));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(bad("has an empty component ('//' or a trailing '/')".into())),
            "." | ".." => return Err(bad("has '.' or '..' components".into())),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashAlgorithm;

    #[test]
    fn partition_names_come_from_the_diff_id_else_the_root_hash() {
        let root = RootHash::parse(&"cd".repeat(32), HashAlgorithm::Sha256).unwrap();
        let diff = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let name = |d, r| partition_name(d, r).unwrap();
        assert_eq!(
            name(Some(&diff), Some(&root)),
            format!("lp-{}", "ab".repeat(16))
        );
        assert_eq!(name(Some(&diff), None), format!("lp-{}", "ab".repeat(16)));
        assert_eq!(name(None, Some(&root)), format!("lp-{}", "cd".repeat(16)));
        assert_eq!(partition_name(None, None), None);
        validate_partition_name(&name(None, Some(&root))).unwrap();
        let sha1 = RootHash::parse(&"ef".repeat(20), HashAlgorithm::Sha1).unwrap();
        assert_eq!(name(None, Some(&sha1)), format!("lp-{}", "ef".repeat(16)));
        let id = crate::LayerId {
            root_hash: root.clone(),
            diff_id: None,
        };
        assert_eq!(id.partition_name(), name(None, Some(&root)));
    }

    #[test]
    fn names() {
        validate_container_id("c1.a_b-2").unwrap();
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
        validate_serial(DEFAULT_COMPOSITE_SERIAL).unwrap();
        for bad in ["", "a b", "a/b", &"s".repeat(21), "é"] {
            assert!(validate_serial(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "a=b", "a\nb", &"n".repeat(37)] {
            assert!(validate_partition_name(bad).is_err(), "{bad:?}");
        }
        for good in ["c1", "web/rootfs", "a.b/c..d"] {
            validate_mount_point(good).unwrap();
        }
        for bad in [
            "",
            "/etc",
            "/run/layerpass/containers/x",
            "..",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            "a\nb",
            &"m".repeat(1025),
        ] {
            let err = validate_mount_point(bad).unwrap_err().to_string();
            assert!(err.starts_with("mount_point "), "{bad:?}: {err}");
        }
    }
}

//! Export names: one file name shared by the node and the socket.

use super::KataStoreError;

/// The longest name (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Checks that `name` is usable as the file name of a node and its socket: 1 to 255
/// bytes of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), KataStoreError> {
    let bad = |reason| {
        Err(KataStoreError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("it is a directory reference");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("only A-Z, a-z, 0-9, '_', '.' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["vhostblk0", "lp-0123.abc_X", "a", "..a", &"n".repeat(255)] {
            validate_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "directory reference"),
            ("..", "directory reference"),
            ("a/b", "only A-Z"),
            ("a b", "only A-Z"),
            ("é", "only A-Z"),
            (&"n".repeat(256), "longer than 255"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains(&format!("{bad:?}")),
                "{err}"
            );
        }
    }
}

//! Path normalisation for tar entry names and hard link targets.
//!
//! Leading `/`, `./` components, repeated and trailing slashes disappear; `..` is resolved
//! lexically (as containerd's applier does after `filepath.Clean`) and a path that would
//! climb above the root is rejected, as is any NUL byte or a component longer than the
//! 255 bytes EROFS (and Linux) allow.

use super::error::ErofsError;

/// Longest directory entry name (`EROFS_NAME_LEN`).
pub const NAME_MAX: usize = 255;

/// The components of a normalised path; empty for the root directory.
pub type Components = Vec<Vec<u8>>;

/// Splits and normalises `raw`; `entry` names the tar entry in errors and `what` says
/// which of its paths this is.
pub fn normalise(raw: &[u8], entry: &str, what: &'static str) -> Result<Components, ErofsError> {
    if raw.contains(&0) {
        return Err(ErofsError::Nul {
            entry: entry.to_owned(),
            what,
        });
    }
    let mut out: Components = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(ErofsError::PathEscape {
                        entry: entry.to_owned(),
                    });
                }
            }
            name => {
                if name.len() > NAME_MAX {
                    return Err(ErofsError::NameTooLong {
                        entry: entry.to_owned(),
                        len: name.len(),
                    });
                }
                out.push(name.to_vec());
            }
        }
    }
    Ok(out)
}

/// `a/b/c` for messages.
pub fn display(components: &[Vec<u8>]) -> String {
    if components.is_empty() {
        return "/".to_owned();
    }
    let joined: Vec<u8> = components.join(&b'/');
    String::from_utf8_lossy(&joined).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<Vec<String>, ErofsError> {
        normalise(p.as_bytes(), p, "path").map(|c| {
            c.into_iter()
                .map(|v| String::from_utf8(v).unwrap())
                .collect()
        })
    }

    #[test]
    fn normalises_dots_and_slashes() {
        assert_eq!(norm("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(norm("/abs/x").unwrap(), ["abs", "x"]);
        assert!(norm("./").unwrap().is_empty());
        assert!(norm(".").unwrap().is_empty());
        assert_eq!(norm("a/../b").unwrap(), ["b"]);
        assert_eq!(norm("..a/b..").unwrap(), ["..a", "b.."]);
    }

    #[test]
    fn rejects_escapes_nul_and_long_names() {
        assert!(matches!(
            norm("../etc/passwd"),
            Err(ErofsError::PathEscape { .. })
        ));
        assert!(matches!(
            norm("a/../../b"),
            Err(ErofsError::PathEscape { .. })
        ));
        assert!(matches!(norm("a\0b"), Err(ErofsError::Nul { .. })));
        let long = "x".repeat(256);
        assert!(matches!(
            norm(&long),
            Err(ErofsError::NameTooLong { len: 256, .. })
        ));
        assert_eq!(norm(&"y".repeat(255)).unwrap().len(), 1);
    }
}

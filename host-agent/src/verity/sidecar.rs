//! containerd's `layer.erofs.dmverity` sidecar: `{"roothash":"<hex>","hashoffset":<bytes>}`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::VerityError;

/// The sidecar containerd's EROFS differ writes next to a layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Root hash, lower-case hex.
    pub roothash: String,
    /// Byte offset of the veritysetup superblock (the end of the padded data).
    pub hashoffset: u64,
}

/// `<data>.dmverity`, the path containerd uses.
pub fn sidecar_path(data: &Path) -> PathBuf {
    let mut s = OsString::from(data.as_os_str());
    s.push(".dmverity");
    PathBuf::from(s)
}

impl Sidecar {
    /// Reads and validates a sidecar.
    pub fn read(path: &Path) -> Result<Self, VerityError> {
        let text = fs::read(path).map_err(VerityError::io("read", path))?;
        Self::parse(&text, path)
    }

    /// Parses and validates the bytes of a sidecar read from `path` (named in errors).
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, VerityError> {
        let bad = |reason: String| VerityError::BadSidecar {
            path: path.to_owned(),
            reason,
        };
        let sidecar: Self = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if sidecar.roothash.is_empty()
            || !sidecar.roothash.len().is_multiple_of(2)
            || !sidecar.roothash.bytes().all(|c| c.is_ascii_hexdigit())
        {
            return Err(bad(format!("roothash {:?} is not hex", sidecar.roothash)));
        }
        Ok(sidecar)
    }

    /// Writes the sidecar atomically: temporary file in the same directory, fsync, rename,
    /// fsync of the directory.
    pub fn write(&self, path: &Path) -> Result<(), VerityError> {
        let json = serde_json::to_vec(self).map_err(|e| VerityError::BadSidecar {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(layerpass_fsutil::write_atomic(path, &json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_containerd_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let p = sidecar_path(&dir.path().join("layer.erofs"));
        assert!(p.ends_with("layer.erofs.dmverity"));
        let s = Sidecar {
            roothash: "ab".repeat(32),
            hashoffset: 8192,
        };
        s.write(&p).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"roothash\":\"{}\",\"hashoffset\":8192}}",
                "ab".repeat(32)
            )
        );
        assert_eq!(Sidecar::read(&p).unwrap(), s);
        // Only the sidecar is left in the directory: the temporary file was renamed.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_sidecars_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dmverity");
        for text in [
            "",
            "{}",
            "{\"roothash\":\"xyz\",\"hashoffset\":1}",
            "{\"roothash\":\"ab\",\"hashoffset\":-1}",
        ] {
            fs::write(&p, text).unwrap();
            let err = Sidecar::read(&p).unwrap_err();
            assert!(
                matches!(err, VerityError::BadSidecar { .. }),
                "{text}: {err}"
            );
        }
    }
}

//! What an in-place tar looked like when it was indexed: `META.tarstamp`, beside an index
//! layer whose tar is the image's own blob (or archive member). An earlier index is reused
//! only when the file still has the same identity, size, modification and change times;
//! otherwise the layer is read (and its digest checked) again. The change time cannot be
//! set back by a user, so even a same-size rewrite with its mtime restored is seen.
//!
//! This is the host's early check, like git's index of `stat` data; the guest's dm-verity
//! remains what stops changed bytes from being read.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `stat` data of an in-place tar's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TarStamp {
    pub path: PathBuf,
    pub offset: u64,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// `<meta>.tarstamp`.
pub(super) fn stamp_path(meta: &Path) -> PathBuf {
    let mut s = OsString::from(meta.as_os_str());
    s.push(".tarstamp");
    PathBuf::from(s)
}

impl TarStamp {
    /// The stamp of `path` now (taken before the tar is read, so a change during the
    /// read shows up as a mismatch next time).
    pub fn of(path: &Path, offset: u64) -> std::io::Result<Self> {
        let m = fs::metadata(path)?;
        Ok(Self {
            path: path.to_owned(),
            offset,
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }

    pub fn write(&self, to: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        layerpass_fsutil::write_atomic(to, &json).map_err(std::io::Error::other)
    }

    /// Whether the stamp stored at `stored` still describes `path` at `offset`.
    pub fn still_matches(stored: &Path, path: &Path, offset: u64) -> bool {
        let Ok(text) = fs::read(stored) else {
            return false;
        };
        let Ok(then) = serde_json::from_slice::<Self>(&text) else {
            return false;
        };
        TarStamp::of(path, offset).is_ok_and(|now| now == then)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_same_size_rewrite_with_its_mtime_restored_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("blob");
        fs::write(&tar, [1u8; 1024]).unwrap();
        let stored = stamp_path(&dir.path().join("meta"));
        TarStamp::of(&tar, 0).unwrap().write(&stored).unwrap();
        assert!(TarStamp::still_matches(&stored, &tar, 0));
        assert!(
            !TarStamp::still_matches(&stored, &tar, 512),
            "another offset"
        );
        let other = dir.path().join("other");
        fs::copy(&tar, &other).unwrap();
        assert!(!TarStamp::still_matches(&stored, &other, 0), "another file");

        let before = fs::metadata(&tar).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&tar, [2u8; 1024]).unwrap();
        fs::File::options()
            .write(true)
            .open(&tar)
            .unwrap()
            .set_modified(before)
            .unwrap();
        assert_eq!(fs::metadata(&tar).unwrap().modified().unwrap(), before);
        assert!(
            !TarStamp::still_matches(&stored, &tar, 0),
            "same size, same mtime, new ctime"
        );
        fs::write(&stored, b"{").unwrap();
        assert!(
            !TarStamp::still_matches(&stored, &tar, 0),
            "unreadable stamp"
        );
    }
}

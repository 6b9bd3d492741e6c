//! Layer files as a user names them on the command line, and who each layer is.
//!
//! Grammar: `FILE[:TREE][@DIGEST][=SERIAL]`, or for an index layer
//! `META+TAR[#OFFSET][:TREE][@DIGEST][=SERIAL]`. `TREE` is a separate dm-verity hash tree file,
//! `DIGEST` the layer's diff ID (`sha256:<64 hex>`), `SERIAL` the virtio-blk serial of the
//! disk that holds it. `META+TAR` is EROFS index metadata and the uncompressed tar it points
//! into (`layerpass convert layer TAR META --index`), the tar starting at byte `OFFSET` of
//! the file `TAR` (0 by default: a layer tar inside a `docker save` archive is referenced in
//! place); its `TREE` defaults to `META.tree`, its root hash is in `META.dmverity`.
//!
//! A path that exists as given is taken whole (it may contain `:`, `@`, `=`, `+` or `#`);
//! otherwise each suffix is taken only when it is valid (a digest that parses, a serial that
//! follows the virtio-blk rule, an offset that is a decimal number), so `a@b.erofs` is still
//! a file name. `+` splits at the first `+` whose left side is an existing file, else at the
//! first `+` with text on both sides when the whole name does not exist.
//!
//! Identity ([`layerpass_types::LayerId`]): the diff ID comes from `@DIGEST`, else from a
//! file named `<64 hex>.erofs` (the flat layout of `layerpass convert image`); the root hash
//! from the blob's `.dmverity` sidecar. A root hash is never used as a digest.

use std::path::{Path, PathBuf};

use layerpass_types::naming::validate_serial;
use layerpass_types::{Digest, HashAlgorithm, RootHash};

use super::DiskError;
use super::composite::CompositeLayer;
use super::index::IndexTar;
use super::layer::{LayerDisk, index_tree_path};
use crate::verity::{Sidecar, sidecar_path};

/// One `FILE[:TREE][@DIGEST][=SERIAL]` or `META+TAR[#OFFSET][:TREE][@DIGEST][=SERIAL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFileSpec {
    /// The layer blob (EROFS, with the tree appended in containerd's layout or not), or an
    /// index layer's metadata (`META`).
    pub blob: PathBuf,
    /// An index layer's tar (`+TAR[#OFFSET]`).
    pub index: Option<IndexTar>,
    /// A separate hash tree file (an index layer's is `META.tree` unless named).
    pub tree: Option<PathBuf>,
    /// The diff ID given with `@DIGEST`.
    pub digest: Option<Digest>,
    /// The serial given with `=SERIAL`.
    pub serial: Option<String>,
}

impl LayerFileSpec {
    /// Parses `FILE[:TREE][@DIGEST][=SERIAL]`.
    pub fn parse(spec: &str) -> Result<Self, DiskError> {
        if spec.is_empty() {
            return Err(DiskError::Invalid {
                what: "layer".into(),
                reason: "empty FILE[:TREE][@DIGEST][=SERIAL]".into(),
            });
        }
        let mut out = Self {
            blob: PathBuf::from(spec),
            index: None,
            tree: None,
            digest: None,
            serial: None,
        };
        if Path::new(spec).exists() {
            return Ok(out);
        }
        let mut rest = spec;
        if let Some((left, serial)) = rest.rsplit_once('=')
            && !left.is_empty()
            && validate_serial(serial).is_ok()
        {
            out.serial = Some(serial.to_owned());
            rest = left;
        }
        if let Some((left, digest)) = rest.rsplit_once('@')
            && !left.is_empty()
            && let Ok(d) = Digest::parse(digest)
        {
            out.digest = Some(d);
            rest = left;
        }
        let (blob, tree) = split_tree(rest);
        out.tree = tree;
        match blob.to_str().and_then(split_index) {
            Some((meta, tar)) => {
                out.tree = out.tree.or_else(|| Some(index_tree_path(&meta)));
                out.blob = meta;
                out.index = Some(tar);
            }
            None => out.blob = blob,
        }
        Ok(out)
    }

    /// The layer's disk, as `blk serve --layer` exports it (`serial` given, else `=SERIAL`,
    /// else the file name).
    pub fn layer_disk(&self, serial: Option<&str>) -> Result<LayerDisk, DiskError> {
        LayerDisk::open_layer(
            &self.blob,
            self.index.as_ref(),
            self.tree.as_deref(),
            serial.or(self.serial.as_deref()),
        )
    }

    /// The diff ID: `@DIGEST`, else the file stem when it is 64 lower-case hex digits.
    pub fn diff_id(&self) -> Option<Digest> {
        self.digest.clone().or_else(|| {
            let stem = self.blob.file_stem()?.to_str()?;
            Digest::parse(&format!("sha256:{stem}")).ok()
        })
    }

    /// The root hash in the blob's `.dmverity` sidecar, if it has one (sha256, the only
    /// algorithm containerd's sidecar knows).
    pub fn sidecar_root_hash(&self) -> Result<Option<RootHash>, DiskError> {
        let side = sidecar_path(&self.blob);
        if !side.exists() {
            return Ok(None);
        }
        let verity = |source| DiskError::Verity {
            path: self.blob.clone(),
            source,
        };
        let s = Sidecar::read(&side).map_err(verity)?;
        RootHash::parse(&s.roothash, HashAlgorithm::Sha256)
            .map(Some)
            .map_err(|e| verity(e.into()))
    }

    /// The serial `blk serve` gives the layer's disk when none is named: the file name,
    /// cut to 20 bytes.
    pub fn default_serial(&self) -> String {
        let name = self
            .blob
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        String::from_utf8_lossy(&super::serial_from(&name)).into_owned()
    }

    /// The layer as a partition of a composite disk, named by its identity.
    pub fn composite_layer(&self) -> Result<CompositeLayer, DiskError> {
        Ok(CompositeLayer {
            blob: self.blob.clone(),
            index: self.index.clone(),
            tree: self.tree.clone(),
            diff_id: self.diff_id(),
            root_hash: self.sidecar_root_hash()?,
            block_size: None,
        })
    }
}

/// `FILE[:TREE]`; a path that exists as given is taken whole (it may contain a colon).
pub fn split_tree(spec: &str) -> (PathBuf, Option<PathBuf>) {
    if Path::new(spec).exists() {
        return (PathBuf::from(spec), None);
    }
    match spec.rsplit_once(':') {
        Some((blob, tree)) if !blob.is_empty() && !tree.is_empty() => {
            (PathBuf::from(blob), Some(PathBuf::from(tree)))
        }
        _ => (PathBuf::from(spec), None),
    }
}

/// `META+TAR[#OFFSET]`, when `spec` (which does not exist as a path) is one: split at the
/// first `+` whose left side exists, else at the first `+` with text on both sides.
fn split_index(spec: &str) -> Option<(PathBuf, IndexTar)> {
    if Path::new(spec).exists() {
        return None;
    }
    let splits: Vec<(&str, &str)> = spec
        .match_indices('+')
        .map(|(i, _)| (&spec[..i], &spec[i + 1..]))
        .filter(|(meta, tar)| !meta.is_empty() && !tar.is_empty())
        .collect();
    let (meta, tar) = splits
        .iter()
        .find(|(meta, _)| Path::new(meta).is_file())
        .or_else(|| splits.first())?;
    let mut index = IndexTar {
        path: PathBuf::from(tar),
        offset: 0,
    };
    if let Some((path, offset)) = tar.rsplit_once('#')
        && !path.is_empty()
        && !Path::new(tar).exists()
        && offset.bytes().all(|c| c.is_ascii_digit())
        && let Ok(offset) = offset.parse::<u64>()
    {
        index = IndexTar {
            path: PathBuf::from(path),
            offset,
        };
    }
    Some((PathBuf::from(meta), index))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn grammar() {
        let s = LayerFileSpec::parse(&format!("/x/l.erofs:/x/t@sha256:{HEX}=ser1")).unwrap();
        assert_eq!(s.blob, Path::new("/x/l.erofs"));
        assert_eq!(s.tree.as_deref(), Some(Path::new("/x/t")));
        assert_eq!(s.digest.as_ref().map(Digest::hex), Some(HEX));
        assert_eq!(s.serial.as_deref(), Some("ser1"));

        let s = LayerFileSpec::parse("/x/l.erofs=s").unwrap();
        assert_eq!(
            (s.blob.as_path(), s.serial.as_deref()),
            (Path::new("/x/l.erofs"), Some("s"))
        );
        // a bad digest or serial stays part of the file name
        let s = LayerFileSpec::parse("/x/a@b.erofs").unwrap();
        assert_eq!(
            (s.blob.as_path(), s.digest.as_ref()),
            (Path::new("/x/a@b.erofs"), None)
        );
        let s = LayerFileSpec::parse(&format!("/x/a=b c@sha256:{HEX}")).unwrap();
        assert_eq!(s.blob, Path::new("/x/a=b c"));
        assert!(s.serial.is_none() && s.digest.is_some());
        assert!(LayerFileSpec::parse("").is_err());
    }

    #[test]
    fn an_existing_path_is_taken_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("odd:name@x=y");
        std::fs::write(&p, b"x").unwrap();
        let s = LayerFileSpec::parse(p.to_str().unwrap()).unwrap();
        assert_eq!((s.blob, s.tree, s.serial), (p, None, None));
    }

    #[test]
    fn identity() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join(format!("{HEX}.erofs"));
        let s = LayerFileSpec::parse(flat.to_str().unwrap()).unwrap();
        assert_eq!(
            s.diff_id().map(|d| d.to_string()),
            Some(format!("sha256:{HEX}"))
        );
        assert_eq!(s.default_serial(), &format!("{HEX}.erofs")[..20]);
        let plain = dir.path().join("layer.erofs");
        std::fs::write(&plain, [0u8; 4096]).unwrap();
        let s = LayerFileSpec::parse(plain.to_str().unwrap()).unwrap();
        assert_eq!(s.diff_id(), None);
        assert_eq!(s.sidecar_root_hash().unwrap(), None);
        Sidecar {
            roothash: "ab".repeat(32),
            hashoffset: 4096,
        }
        .write(&sidecar_path(&plain))
        .unwrap();
        let root = s.sidecar_root_hash().unwrap().unwrap();
        assert_eq!(root.to_hex(), "ab".repeat(32));
        let c = s.composite_layer().unwrap();
        assert_eq!((c.diff_id, c.root_hash), (None, Some(root)));
    }
}

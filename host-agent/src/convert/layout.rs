//! Where a layer's blob goes in the output directory.

use std::fmt;
use std::path::{Path, PathBuf};

use layerpass_types::Digest;

/// Layout of the output directory. Blobs are keyed by the layer's diff ID, because that
/// is what containerd 2.4 looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputLayout {
    /// `sha256/<first 2 hex>/<hex>.erofs` + `.dmverity`: containerd 2.4's
    /// `layer_content_caches`.
    ContainerdCache,
    /// `<hex>.erofs` + `.dmverity`.
    Flat,
}

impl OutputLayout {
    /// The blob path of the layer with diff ID `diff_id` under `out_dir`; the sidecar is
    /// [`crate::verity::sidecar_path`] of it.
    pub fn blob_path(self, out_dir: &Path, diff_id: &Digest) -> PathBuf {
        let hex = diff_id.hex();
        let file = format!("{hex}.erofs");
        match self {
            Self::ContainerdCache => out_dir
                .join(diff_id.algorithm().name())
                .join(hex.get(..2).unwrap_or(hex))
                .join(file),
            Self::Flat => out_dir.join(file),
        }
    }

    /// The name the CLI and the JSON report use: `containerd-cache` or `flat`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ContainerdCache => "containerd-cache",
            Self::Flat => "flat",
        }
    }
}

impl fmt::Display for OutputLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn paths_are_keyed_by_the_diff_id() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let out = Path::new("/cache");
        assert_eq!(
            OutputLayout::ContainerdCache.blob_path(out, &d),
            PathBuf::from(format!("/cache/sha256/e3/{HEX}.erofs"))
        );
        assert_eq!(
            OutputLayout::Flat.blob_path(out, &d),
            PathBuf::from(format!("/cache/{HEX}.erofs"))
        );
        assert_eq!(
            OutputLayout::ContainerdCache.to_string(),
            "containerd-cache"
        );
        assert_eq!(OutputLayout::Flat.name(), "flat");
    }
}

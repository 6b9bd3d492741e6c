//! Media types: which documents and layers we read, and how a layer is compressed.

use super::error::ImageError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub use crate::compression::Compression;

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Self::None => OCI_LAYER,
            Self::Gzip => OCI_LAYER_GZIP,
            Self::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

/// Whether a descriptor in an index points at another index or at an image manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Index,
    Manifest,
}

/// Classifies a descriptor's media type inside an index; `None` for anything else
/// (artifacts, signatures), which is skipped.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Manifest),
        _ => None,
    }
}

/// Checks a layer's media type; `what` names the layer in the error.
pub fn layer_compression(media_type: &str, what: &str) -> Result<Compression, ImageError> {
    let unsupported = |reason: &str| ImageError::UnsupportedMediaType {
        what: what.to_owned(),
        media_type: media_type.to_owned(),
        reason: reason.to_owned(),
    };
    match media_type {
        OCI_LAYER | DOCKER_LAYER => Ok(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD => Ok(Compression::Zstd),
        m if m.contains("nondistributable") || m.contains(".foreign.") => Err(unsupported(
            "non-distributable (foreign) layers are not part of the image's content and cannot \
             be converted",
        )),
        m if m.starts_with("application/vnd.oci.image.layer.") => Err(unsupported(
            "unknown layer compression (expected none, +gzip or +zstd)",
        )),
        _ => Err(unsupported(
            "not a container layer type (expected an OCI tar layer, plain, +gzip or +zstd, or \
             docker's tar.gzip layer)",
        )),
    }
}

/// Checks an image config's media type.
pub fn check_config(media_type: &str, what: &str) -> Result<(), ImageError> {
    match media_type {
        OCI_CONFIG | DOCKER_CONFIG => Ok(()),
        _ => Err(ImageError::UnsupportedMediaType {
            what: what.to_owned(),
            media_type: media_type.to_owned(),
            reason: "not a container image config: this manifest is an artifact, not an image"
                .to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types() {
        assert_eq!(
            layer_compression(OCI_LAYER, "l").unwrap(),
            Compression::None
        );
        assert_eq!(
            layer_compression(OCI_LAYER_GZIP, "l").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            layer_compression(OCI_LAYER_ZSTD, "l").unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP, "l").unwrap(),
            Compression::Gzip
        );
        for bad in [
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/octet-stream",
        ] {
            let e = layer_compression(bad, "layer 2").unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("layer 2"), "{e}");
        }
    }

    #[test]
    fn sniff() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/\0\0"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }
}

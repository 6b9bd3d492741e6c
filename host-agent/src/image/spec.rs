//! The JSON documents we read, as typed structs holding only the fields we use.
//!
//! OCI documents are extensible, so unknown fields are ignored (no `deny_unknown_fields`);
//! every field we use is validated after parsing by [`RawDescriptor::validate`] and the
//! readers, so that errors name the document and field.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::{Digest, RawDigest};
use super::error::ImageError;
use super::platform::Platform;

/// `oci-layout`: `{"imageLayoutVersion": "1.0.0"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciLayoutFile {
    pub image_layout_version: String,
}

/// A content descriptor as it appears in JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawDescriptor {
    pub media_type: String,
    pub digest: RawDigest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A descriptor whose digest has been validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
    pub annotations: BTreeMap<String, String>,
}

impl RawDescriptor {
    /// Validates the digest; `what` names the descriptor (e.g. `manifest sha256:… layers[2]`).
    pub fn validate(self, what: &str) -> Result<Descriptor, ImageError> {
        if self.media_type.is_empty() {
            return Err(ImageError::invalid(what, "its mediaType is empty"));
        }
        Ok(Descriptor {
            digest: self.digest.validate(what)?,
            media_type: self.media_type,
            size: self.size,
            platform: self.platform,
            annotations: self.annotations.unwrap_or_default(),
        })
    }
}

/// An image index (OCI) or manifest list (docker).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<RawDescriptor>,
}

/// An image manifest (OCI or docker schema 2).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: RawDescriptor,
    pub layers: Vec<RawDescriptor>,
}

/// The part of an image config we use.
#[derive(Debug, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

impl ImageConfig {
    /// The config's platform, if it names both OS and architecture.
    pub fn platform(&self) -> Option<Platform> {
        match (&self.os, &self.architecture) {
            (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => Some(Platform {
                os: os.clone(),
                arch: arch.clone(),
                variant: self.variant.clone(),
            }),
            _ => None,
        }
    }
}

/// `rootfs` of an image config.
#[derive(Debug, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<RawDigest>,
}

/// One entry of a `docker save` archive's `manifest.json`.
#[derive(Debug, Deserialize)]
pub struct DockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// Checks `schemaVersion` and an optional `mediaType` of an index or manifest.
pub fn check_header(
    what: &str,
    schema_version: u32,
    media_type: Option<&str>,
    allowed: &[&str],
) -> Result<(), ImageError> {
    if schema_version != 2 {
        return Err(ImageError::invalid(
            what,
            format!("schemaVersion is {schema_version}, expected 2"),
        ));
    }
    match media_type {
        Some(m) if !allowed.contains(&m) => Err(ImageError::UnsupportedMediaType {
            what: what.to_owned(),
            media_type: m.to_owned(),
            reason: format!("expected {}", allowed.join(" or ")),
        }),
        _ => Ok(()),
    }
}

/// Parses JSON `bytes` into `T`, naming `what` on failure.
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::json(what, &e))
}

/// The rootfs diff ids of a config, validated.
pub fn diff_ids(config: &ImageConfig, what: &str) -> Result<Vec<Digest>, ImageError> {
    if config.rootfs.kind != "layers" {
        return Err(ImageError::invalid(
            what,
            format!(
                "rootfs.type is {:?}, expected \"layers\"",
                config.rootfs.kind
            ),
        ));
    }
    config
        .rootfs
        .diff_ids
        .iter()
        .enumerate()
        .map(|(i, d)| d.validate(&format!("{what} rootfs.diff_ids[{i}]")))
        .collect()
}

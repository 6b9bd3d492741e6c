//! `docker save` archives: `manifest.json` lists each image's config and layer files.
//!
//! Two forms exist. The legacy one (Docker < 25) stores the config as `<hex>.json` and each
//! layer as an uncompressed `<id>/layer.tar` (possibly a symlink to an identical layer's
//! file), whose sha256 is therefore the layer's diff id. Docker ≥ 25 stores an OCI layout in
//! the archive and `manifest.json` names `blobs/sha256/<hex>` files. `manifest.json` carries
//! no media types, so a layer's compression is recognised by its magic bytes, as
//! `docker load` does.

use std::path::Path;
use std::sync::Arc;

use super::archive::normalize;
use super::digest::Digest;
use super::error::ImageError;
use super::media::Compression;
use super::model::{CONFIG_LIMIT, Image, Layer, METADATA_LIMIT, SourceFormat};
use super::platform::Platform;
use super::select::{Candidate, select};
use super::spec::{self, DockerEntry, ImageConfig};
use super::store::{BlobRef, Store};

struct Chosen {
    entry: DockerEntry,
    what: String,
    config_digest: Digest,
    config: ImageConfig,
    config_blob: BlobRef,
}

/// Reads the image for `platform` from the `docker save` archive in `store`.
pub fn read(
    store: &Arc<Store>,
    source: &Path,
    platform: Option<&Platform>,
) -> Result<Image, ImageError> {
    let list_what = store.location("manifest.json");
    let entries: Vec<DockerEntry> = spec::parse(
        &store.read_meta("manifest.json", METADATA_LIMIT)?,
        &list_what,
    )?;
    if entries.is_empty() {
        return Err(ImageError::invalid(&list_what, "it lists no images"));
    }
    let mut candidates = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let what = format!("{list_what} entry {i}");
        let config_path = member_path(&entry.config, &format!("{what} Config"))?;
        let config_digest = config_digest(&config_path, &what)?;
        let size = store.size_of(&config_path)?;
        let blob = BlobRef {
            digest: config_digest.clone(),
            size,
            path: config_path,
        };
        let config_what = format!("image config {config_digest}");
        let config: ImageConfig = spec::parse(
            &store.read_blob(&blob, CONFIG_LIMIT, &config_what)?,
            &config_what,
        )?;
        let label = match entry.repo_tags.as_deref() {
            Some(tags) if !tags.is_empty() => format!("{config_digest} {}", tags.join(" ")),
            _ => config_digest.to_string(),
        };
        candidates.push(Candidate {
            platform: config.platform(),
            label,
            item: Chosen {
                entry,
                what,
                config_digest,
                config,
                config_blob: blob,
            },
        });
    }
    let chosen = select(candidates, platform, &list_what)?.item;
    let diff_ids = spec::diff_ids(
        &chosen.config,
        &format!("image config {}", chosen.config_digest),
    )?;
    if diff_ids.len() != chosen.entry.layers.len() {
        return Err(ImageError::LayerCountMismatch {
            config: chosen.config_digest.to_string(),
            diff_ids: diff_ids.len(),
            layers: chosen.entry.layers.len(),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (i, (name, diff_id)) in chosen.entry.layers.iter().zip(diff_ids).enumerate() {
        let what = format!("{} Layers[{i}]", chosen.what);
        let path = member_path(name, &what)?;
        let size = store.size_of(&path)?;
        let compression = Compression::sniff(&store.head(&path, 4)?);
        let digest = match oci_blob_digest(&path, &what)? {
            Some(d) => d,
            None if compression == Compression::None => diff_id.clone(),
            None => {
                return Err(ImageError::invalid(
                    store.location(&path),
                    format!(
                        "a legacy docker save layer is {compression:?}-compressed; docker save \
                         writes them uncompressed, and the digest of a compressed one is not \
                         recorded anywhere, so it cannot be verified"
                    ),
                ));
            }
        };
        let blob = BlobRef { digest, size, path };
        let media_type = compression.oci_media_type().to_owned();
        layers.push(Layer::new(i, blob, media_type, compression, diff_id, store));
    }
    Ok(Image {
        source: source.to_owned(),
        format: SourceFormat::DockerArchive,
        manifest_digest: None,
        config_digest: chosen.config_digest,
        platform: chosen.config.platform(),
        layers,
        config_blob: chosen.config_blob,
        store: Arc::clone(store),
    })
}

fn member_path(name: &str, what: &str) -> Result<String, ImageError> {
    normalize(name).ok_or_else(|| {
        ImageError::invalid(
            what,
            format!("{name:?} is not a relative path inside the archive"),
        )
    })
}

/// `blobs/sha256/<hex>` → the digest; another `blobs/…` path is an error; anything else
/// `None`.
fn oci_blob_digest(path: &str, what: &str) -> Result<Option<Digest>, ImageError> {
    let Some(rest) = path.strip_prefix("blobs/") else {
        return Ok(None);
    };
    match rest.split_once('/') {
        Some(("sha256", hex)) => super::digest::from_hex(hex, what).map(Some),
        Some((alg, _)) => Err(ImageError::UnsupportedDigestAlgorithm {
            what: what.to_owned(),
            algorithm: alg.to_owned(),
        }),
        None => Err(ImageError::invalid(
            what,
            format!("{path:?} is not blobs/<alg>/<hex>"),
        )),
    }
}

/// A config is stored under its digest: `blobs/sha256/<hex>` or (legacy) `<hex>.json`.
fn config_digest(path: &str, what: &str) -> Result<Digest, ImageError> {
    if let Some(d) = oci_blob_digest(path, what)? {
        return Ok(d);
    }
    match path.strip_suffix(".json") {
        Some(hex) if !hex.contains('/') && hex.len() == 64 => {
            super::digest::from_hex(hex, &format!("{what} Config"))
        }
        _ => Err(ImageError::invalid(
            what,
            format!(
                "Config {path:?} does not name its digest (expected <hex>.json or \
                 blobs/sha256/<hex>), so it cannot be verified"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn config_paths() {
        assert_eq!(
            config_digest(&format!("{HEX}.json"), "e").unwrap().hex(),
            HEX
        );
        assert_eq!(
            config_digest(&format!("blobs/sha256/{HEX}"), "e")
                .unwrap()
                .hex(),
            HEX
        );
        assert!(config_digest("config.json", "e").is_err());
        assert!(config_digest(&format!("x/{HEX}.json"), "e").is_err());
        assert!(config_digest(&format!("blobs/sha512/{HEX}"), "e").is_err());
    }
}

//! OCI image layouts: `oci-layout`, `index.json` (nested indexes followed), the chosen
//! manifest and its config, every document verified against its descriptor.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::error::ImageError;
use super::media::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ManifestKind, OCI_INDEX, OCI_MANIFEST, check_config,
    manifest_kind,
};
use super::model::{CONFIG_LIMIT, Image, METADATA_LIMIT, SourceFormat, layers_from_descriptors};
use super::platform::Platform;
use super::select::{Candidate, select};
use super::spec::{self, Descriptor, ImageConfig, Index, Manifest, OciLayoutFile};
use super::store::{BlobRef, Store};

/// Indexes nest at most this deep.
const MAX_DEPTH: usize = 8;
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads the image for `platform` from an OCI layout in `store`.
pub fn read(
    store: &Arc<Store>,
    source: &Path,
    format: SourceFormat,
    platform: Option<&Platform>,
) -> Result<Image, ImageError> {
    check_layout(store, source)?;
    let index_what = store.location("index.json");
    let index: Index = spec::parse(&store.read_meta("index.json", METADATA_LIMIT)?, &index_what)?;
    let mut candidates = Vec::new();
    walk(store, index, &index_what, 0, &mut candidates)?;
    let chosen = select(candidates, platform, &index_what)?.item;

    let what = format!("manifest {}", chosen.digest);
    let bytes = store.read_blob(
        &BlobRef::oci(chosen.digest.clone(), chosen.size),
        METADATA_LIMIT,
        &what,
    )?;
    let manifest: Manifest = spec::parse(&bytes, &what)?;
    spec::check_header(
        &what,
        manifest.schema_version,
        manifest.media_type.as_deref(),
        &[OCI_MANIFEST, DOCKER_MANIFEST],
    )?;

    let config_desc = manifest.config.validate(&format!("{what} config"))?;
    check_config(
        &config_desc.media_type,
        &format!("config {} of {what}", config_desc.digest),
    )?;
    let config_what = format!("image config {}", config_desc.digest);
    let config_blob = BlobRef::oci(config_desc.digest.clone(), config_desc.size);
    let config: ImageConfig = spec::parse(
        &store.read_blob(&config_blob, CONFIG_LIMIT, &config_what)?,
        &config_what,
    )?;
    let diff_ids = spec::diff_ids(&config, &config_what)?;
    if chosen.platform.is_none() {
        warn_platform_mismatch(&config, platform, &what);
    }

    let descriptors = manifest
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, raw)| raw.validate(&format!("{what} layers[{i}]")))
        .collect::<Result<Vec<Descriptor>, _>>()?;
    let layers = layers_from_descriptors(store, descriptors, diff_ids, &config_desc.digest, &what)?;
    Ok(Image {
        source: source.to_owned(),
        format,
        manifest_digest: Some(chosen.digest),
        config_digest: config_desc.digest,
        platform: config.platform(),
        layers,
        config_blob,
        store: Arc::clone(store),
    })
}

fn check_layout(store: &Store, source: &Path) -> Result<(), ImageError> {
    let not_layout = |reason: String| ImageError::NotOciLayout {
        path: source.to_owned(),
        reason,
    };
    if !store.contains("oci-layout") {
        return Err(not_layout("it has no oci-layout file".into()));
    }
    let what = store.location("oci-layout");
    let layout: OciLayoutFile = spec::parse(&store.read_meta("oci-layout", 4096)?, &what)?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(not_layout(format!(
            "imageLayoutVersion is {:?}; only 1.x is supported",
            layout.image_layout_version
        )));
    }
    Ok(())
}

/// Collects the image manifests reachable from `index`, depth first, in document order.
fn walk(
    store: &Store,
    index: Index,
    what: &str,
    depth: usize,
    out: &mut Vec<Candidate<Descriptor>>,
) -> Result<(), ImageError> {
    spec::check_header(
        what,
        index.schema_version,
        index.media_type.as_deref(),
        &[OCI_INDEX, DOCKER_MANIFEST_LIST],
    )?;
    for (i, raw) in index.manifests.into_iter().enumerate() {
        let desc = raw.validate(&format!("{what} manifests[{i}]"))?;
        match manifest_kind(&desc.media_type) {
            Some(ManifestKind::Index) => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(ImageError::IndexTooDeep {
                        what: what.to_owned(),
                        limit: MAX_DEPTH,
                    });
                }
                let child_what = format!("index {}", desc.digest);
                let blob = BlobRef::oci(desc.digest.clone(), desc.size);
                let child: Index = spec::parse(
                    &store.read_blob(&blob, METADATA_LIMIT, &child_what)?,
                    &child_what,
                )?;
                walk(store, child, &child_what, depth + 1, out)?;
            }
            Some(ManifestKind::Manifest) => out.push(Candidate {
                platform: desc.platform.clone(),
                label: label(&desc.digest.to_string(), &desc.annotations),
                item: desc,
            }),
            None => tracing::debug!(
                index = what,
                digest = %desc.digest,
                media_type = desc.media_type,
                "skipping a descriptor that is neither an index nor an image manifest"
            ),
        }
    }
    Ok(())
}

fn label(digest: &str, annotations: &BTreeMap<String, String>) -> String {
    match annotations.get(REF_NAME) {
        Some(r) => format!("{digest} {r}"),
        None => digest.to_owned(),
    }
}

/// A manifest taken because it was the only one and named no platform: say so when its
/// config names a platform other than the one asked for.
fn warn_platform_mismatch(config: &ImageConfig, wanted: Option<&Platform>, what: &str) {
    let default = Platform::linux_amd64();
    let wanted = wanted.unwrap_or(&default);
    if let Some(actual) = config.platform()
        && wanted.score(&actual).is_none()
    {
        tracing::warn!(
            manifest = what,
            "the image config says {actual}, not {wanted}; converting it anyway because the \
             index names no platform and holds only this image"
        );
    }
}

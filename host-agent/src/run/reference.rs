//! Reference values for a confidential run, computed from the image's layer tars by the one
//! implementation of `layerpass attest reference-values --as layerpass`
//! ([`crate::attest::reference`]) in a directory of their own, never read from the
//! conversion cache: a tampered cache whose trees were re-formatted to match cannot produce
//! matching root hashes. They reach the guest agent as a CoCo initdata document
//! (`--initdata`), the form a TEE binds to its launch measurement.

use std::path::Path;

use layerpass_types::initdata::{Initdata, InitdataAlgorithm};

use super::error::RunError;
use crate::attest::reference::{Builder, Input, compute};
use crate::attest::render;
use crate::convert::LayerFormat;
use crate::image::Platform;

/// The initdata document of a run and its digest.
#[derive(Debug, Clone)]
pub struct RunInitdata {
    /// The document (the reference values under `"layerpass.toml"`).
    pub document: String,
    /// `sha256:<hex>` of the document's bytes.
    pub digest: String,
}

/// The initdata holding the guest agent's reference values for `image`: each layer's root
/// hash as layerpass converts it in `format` (build time 0, as the run's own conversion:
/// a full image, or an index layer over the tar), bound to its diff ID. Temporary files go
/// under `scratch` and are gone when this returns.
pub fn from_image(
    image: &Path,
    platform: Option<&Platform>,
    format: LayerFormat,
    scratch: &Path,
) -> Result<RunInitdata, RunError> {
    let input = Input::Image {
        path: image.to_owned(),
        platform: platform.cloned(),
    };
    let builder = match format {
        LayerFormat::Full => Builder::Layerpass { mkfs_time: 0 },
        LayerFormat::Index => Builder::LayerpassIndex { mkfs_time: 0 },
    };
    let report = compute(&input, &builder, Some(scratch), &|_, _| {})?;
    let values = render::reference_values_toml(&report);
    // no attestation agent in a `layerpass run` VM: only our entry
    let document = render::initdata(&values, InitdataAlgorithm::Sha256, false);
    let digest = Initdata::parse(document.as_bytes())
        .map_err(|e| RunError::Boot(format!("the run's initdata: {e}")))?
        .digest_string();
    Ok(RunInitdata { document, digest })
}

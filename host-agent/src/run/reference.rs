//! Reference values for a confidential run, computed from the image's layer tars into a
//! directory of their own, never read from the conversion cache: a tampered cache whose
//! trees were re-formatted to match cannot produce matching root hashes.

use std::path::Path;

use super::error::RunError;
use crate::convert::{ImageConvertOptions, OutputLayout, convert_image};
use crate::image::Platform;

/// The guest agent's reference-values TOML: each layer's root hash bound to its diff ID.
pub fn from_image(
    image: &Path,
    platform: Option<&Platform>,
    scratch: &Path,
) -> Result<String, RunError> {
    let mut o = ImageConvertOptions::new(OutputLayout::ContainerdCache, scratch);
    o.platform = platform.cloned();
    let report = convert_image(image, &o, &|_| {})?;
    let mut toml =
        String::from("# layerpass run: root hashes computed from the image's layer tars\n");
    for l in &report.layers {
        toml.push_str(&format!(
            "\n[[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n",
            l.root_hash, l.diff_id
        ));
    }
    // The trees are not needed: only their root hashes.
    let _ = std::fs::remove_dir_all(scratch);
    Ok(toml)
}

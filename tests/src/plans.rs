//! Mount plans for the VM tests, built by the host's own plan builder
//! (`layerpass::plan`) from the layer files: no hand-written plan JSON.

use std::path::Path;

use layerpass::export::spec::LayerFileSpec;
use layerpass::plan::{LayerPlacement, PlanBuilder, PlannedLayer, Upper, plan_layer_files};
use layerpass_protocols::v1::guest as pb;
use layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE;
use layerpass_types::naming::DEFAULT_COMPOSITE_SERIAL;

/// The layer `blob` (containerd's verity layout, `.dmverity` sidecar beside it) with diff
/// ID `digest`, on the whole disk with `serial`.
pub fn on_disk(blob: &Path, digest: &str, serial: &str) -> anyhow::Result<PlannedLayer> {
    let placement = LayerPlacement::Disk {
        serial: serial.to_owned(),
        logical_block_size: DEFAULT_LOGICAL_BLOCK_SIZE,
    };
    Ok(plan_layer_files(&spec(blob, digest)?, placement, false)?)
}

/// The same layer as its partition of the composite disk `blk serve --composite` exports
/// (serial `lp-composite`).
pub fn on_composite(blob: &Path, digest: &str) -> anyhow::Result<PlannedLayer> {
    let spec = spec(blob, digest)?;
    let c = spec.composite_layer()?;
    let name = layerpass_types::naming::partition_name(c.diff_id.as_ref(), c.root_hash.as_ref())
        .ok_or_else(|| anyhow::anyhow!("{}: no identity", blob.display()))?;
    let placement = LayerPlacement::Partition {
        serial: DEFAULT_COMPOSITE_SERIAL.to_owned(),
        name,
        logical_block_size: DEFAULT_LOGICAL_BLOCK_SIZE,
    };
    Ok(plan_layer_files(&spec, placement, false)?)
}

/// The layer `spec` as the command line writes it (`BLOB@DIGEST`, or an index layer's
/// `META+TAR@DIGEST`) on the whole disk with `serial`, which advertises
/// `logical_block_size`-byte blocks (512 for index layers and containerd's tar-index blobs).
pub fn on_disk_spec(
    spec: &str,
    serial: &str,
    logical_block_size: u32,
) -> anyhow::Result<PlannedLayer> {
    let placement = LayerPlacement::Disk {
        serial: serial.to_owned(),
        logical_block_size,
    };
    Ok(plan_layer_files(
        &LayerFileSpec::parse(spec)?,
        placement,
        false,
    )?)
}

fn spec(blob: &Path, digest: &str) -> anyhow::Result<LayerFileSpec> {
    Ok(LayerFileSpec::parse(&format!(
        "{}@{digest}",
        blob.display()
    ))?)
}

/// The request for `id` with `layers` (top first) and `upper`.
pub fn request(
    id: &str,
    layers: &[PlannedLayer],
    upper: Upper,
) -> anyhow::Result<pb::MountRequest> {
    let builder = layers
        .iter()
        .fold(PlanBuilder::new(id).upper(upper), |b, l| b.layer(l.clone()));
    Ok(builder.build()?)
}

/// The same as a one-shot plan file (`layerpass-guest mount --plan`): the protobuf JSON
/// mapping `layerpass plan` prints.
pub fn plan_json(id: &str, layers: &[PlannedLayer], upper: Upper) -> anyhow::Result<Vec<u8>> {
    let req = request(id, layers, upper)?;
    Ok(layerpass_protocols::json::print_plan(&req)?.into_bytes())
}

/// A converted one-layer image (containerd's verity layout) holding `data/f.txt` =
/// "verified\n", made from a tar of a tree under `dir`: `(blob, diff ID, root hash)`.
pub fn verified_file_layer(dir: &Path) -> anyhow::Result<(std::path::PathBuf, String, String)> {
    use anyhow::Context;
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("data"))?;
    std::fs::write(tree.join("data/f.txt"), "verified\n")?;
    let tar = dir.join("l.tar");
    crate::tools::run(
        std::process::Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    let blob = dir.join("l.erofs");
    let report = layerpass::erofs::convert_layer(
        std::fs::File::open(&tar)?,
        &blob,
        &layerpass::erofs::ConvertOptions::default(),
    )?;
    let root = report
        .root_hash
        .clone()
        .context("the layer has no root hash")?;
    Ok((blob, report.diff_id, root))
}

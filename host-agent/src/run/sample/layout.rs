//! The OCI image layout of the sample image: `oci-layout`, `index.json` and
//! `blobs/sha256/` holding the layers, the config and the manifest.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use super::tarball::{LayerBlob, MTIME, sha256_digest};
use crate::run::error::RunError;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The image's creation time: [`MTIME`] in RFC 3339.
const CREATED: &str = "2024-01-01T00:00:00Z";
const _: () = assert!(MTIME == 1_704_067_200, "CREATED must be MTIME");

/// The sample image's runtime config.
const ENV: [&str; 2] = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LAYERPASS_SAMPLE=1",
];
const WORKING_DIR: &str = "/home/user";
const CMD: [&str; 2] = ["cat", "/etc/os-release"];

/// Writes the layout of an image made of `layers` (bottom first, each described by
/// `history`) into the existing empty directory `root`; returns the manifest's digest.
pub fn write_layout(
    root: &Path,
    layers: &[LayerBlob],
    history: &[&str],
) -> Result<String, RunError> {
    let blobs = root.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(RunError::io("create", &blobs))?;
    let mut layer_descs = Vec::with_capacity(layers.len());
    for l in layers {
        layer_descs.push(put(&blobs, LAYER_GZIP, &l.gzip)?);
    }
    let config = json!({
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ENV,
            "WorkingDir": WORKING_DIR,
            "Cmd": CMD,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": history
            .iter()
            .map(|h| json!({"created": CREATED, "created_by": h}))
            .collect::<Vec<_>>(),
    });
    let config_desc = put(&blobs, CONFIG, &to_bytes(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    });
    let manifest_bytes = to_bytes(&manifest)?;
    let mut manifest_desc = put(&blobs, MANIFEST, &manifest_bytes)?;
    manifest_desc["platform"] = json!({"architecture": "amd64", "os": "linux"});
    manifest_desc["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [manifest_desc],
    });
    write(&root.join("index.json"), &to_bytes(&index)?)?;
    write(
        &root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    layerpass_fsutil::sync_dir(&blobs)?;
    layerpass_fsutil::sync_dir(&root.join("blobs"))?;
    Ok(sha256_digest(&manifest_bytes))
}

/// Stores `bytes` as a blob; returns its descriptor.
fn put(blobs: &Path, media_type: &str, bytes: &[u8]) -> Result<Value, RunError> {
    let digest = sha256_digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    write(&blobs.join(hex), bytes)?;
    Ok(json!({"mediaType": media_type, "digest": digest, "size": bytes.len()}))
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, RunError> {
    serde_json::to_vec(v).map_err(|e| RunError::BadConfig(format!("cannot serialise: {e}")))
}

/// Writes and fsyncs a new file.
fn write(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut f = File::create_new(path).map_err(RunError::io("create", path))?;
    f.write_all(bytes).map_err(RunError::io("write", path))?;
    f.sync_all().map_err(RunError::io("sync", path))
}

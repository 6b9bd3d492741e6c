//! Builds real OCI image layouts and `docker save` archives for the image tests: tar layers
//! made with the tar crate, gzip with flate2, zstd with the zstd crate, every document and
//! digest computed here, independently of the code under test.

#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use layerpass::image::{Compression, Layer};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// A tar of regular files (and their parent directories).
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// A layer as stored: media type, blob bytes and the diff id of its tar.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub media_type: String,
    pub blob: Vec<u8>,
    pub diff_id: String,
}

impl LayerSpec {
    pub fn new(media_type: &str, tar: &[u8]) -> Self {
        let blob = match media_type {
            LAYER_GZIP | DOCKER_GZIP => gzip(tar),
            LAYER_ZSTD => zstd(tar),
            _ => tar.to_vec(),
        };
        Self {
            media_type: media_type.to_owned(),
            blob,
            diff_id: digest(tar),
        }
    }
}

/// Three small layers, plain, gzip and zstd, each with distinct content.
pub fn three_layers(tag: &str) -> Vec<LayerSpec> {
    vec![
        LayerSpec::new(
            LAYER_TAR,
            &layer_tar(&[("etc/os-release", format!("base {tag}\n").as_bytes())]),
        ),
        LayerSpec::new(
            LAYER_GZIP,
            &layer_tar(&[
                ("usr/bin/tool", format!("tool {tag}").as_bytes()),
                ("usr/share/doc", &[b'x'; 10_000]),
            ]),
        ),
        LayerSpec::new(
            LAYER_ZSTD,
            &layer_tar(&[("app/main", format!("main {tag}").as_bytes())]),
        ),
    ]
}

pub fn config_json(os: &str, arch: &str, variant: Option<&str>, diff_ids: &[String]) -> Vec<u8> {
    let mut c = json!({
        "architecture": arch,
        "os": os,
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test"}],
    });
    if let Some(v) = variant {
        c["variant"] = json!(v);
    }
    serde_json::to_vec(&c).unwrap()
}

/// An OCI image layout directory under construction.
#[derive(Debug)]
pub struct OciDir {
    pub root: PathBuf,
}

impl OciDir {
    pub fn new(root: &Path) -> Self {
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Self {
            root: root.to_owned(),
        }
    }

    /// Stores a blob and returns its descriptor.
    pub fn put(&self, media_type: &str, bytes: &[u8]) -> Value {
        fs::write(
            self.root.join("blobs/sha256").join(sha256_hex(bytes)),
            bytes,
        )
        .unwrap();
        json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()})
    }

    pub fn blob_path(&self, descriptor: &Value) -> PathBuf {
        let d = descriptor["digest"].as_str().unwrap();
        self.root
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    }

    /// Stores config, layers and manifest; returns the manifest descriptor with `platform`
    /// (`os/arch[/variant]`) when given.
    pub fn image(&self, layers: &[LayerSpec], platform: Option<&str>) -> Value {
        let (os, arch, variant) = split_platform(platform.unwrap_or("linux/amd64"));
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = self.put(OCI_CONFIG, &config_json(os, arch, variant, &diff_ids));
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| self.put(&l.media_type, &l.blob))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layer_descs,
        });
        let mut desc = self.put(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        if let Some(p) = platform {
            let (os, arch, variant) = split_platform(p);
            desc["platform"] = json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                desc["platform"]["variant"] = json!(v);
            }
        }
        desc
    }

    /// Stores an index blob listing `manifests`; returns its descriptor.
    pub fn index_blob(&self, manifests: Vec<Value>) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": Value::Array(manifests)});
        self.put(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    }

    pub fn write_index(&self, manifests: Vec<Value>) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": Value::Array(manifests)});
        fs::write(
            self.root.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// Reads back the manifest a descriptor points to.
    pub fn manifest(&self, descriptor: &Value) -> Value {
        serde_json::from_slice(&fs::read(self.blob_path(descriptor)).unwrap()).unwrap()
    }

    /// Rewrites the manifest behind `descriptor` with `edit`, returning the new descriptor.
    pub fn edit_manifest(&self, descriptor: &Value, edit: impl FnOnce(&mut Value)) -> Value {
        let mut m = self.manifest(descriptor);
        edit(&mut m);
        let mut d = self.put(OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
        if let Some(p) = descriptor.get("platform") {
            d["platform"] = p.clone();
        }
        d
    }
}

pub fn split_platform(p: &str) -> (&str, &str, Option<&str>) {
    let mut parts = p.split('/');
    let os = parts.next().unwrap();
    let arch = parts.next().unwrap();
    (os, arch, parts.next())
}

/// Appends a regular file to a tar builder.
pub fn add_file(b: &mut tar::Builder<fs::File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
}

fn add_symlink(b: &mut tar::Builder<fs::File>, name: &str, target: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o777);
    h.set_entry_type(tar::EntryType::Symlink);
    b.append_link(&mut h, name, target).unwrap();
}

/// Tars a directory tree (an OCI layout) into `out`.
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// The legacy `docker save` form (Docker < 25): `<config hex>.json`, `<id>/layer.tar`,
/// `manifest.json`, `repositories`. Layers whose tar repeats an earlier one are symlinks to
/// it, as docker writes them. Returns the config digest.
pub fn docker_legacy(out: &Path, tars: &[Vec<u8>], platform: &str, tag: &str) -> String {
    let (os, arch, variant) = split_platform(platform);
    let diff_ids: Vec<String> = tars.iter().map(|t| digest(t)).collect();
    let config = config_json(os, arch, variant, &diff_ids);
    let config_hex = sha256_hex(&config);
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    let mut layer_paths = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, t) in tars.iter().enumerate() {
        let id = sha256_hex(format!("layer-id-{i}-{}", sha256_hex(t)).as_bytes());
        let path = format!("{id}/layer.tar");
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        b.append_data(&mut dir, format!("{id}/"), std::io::empty())
            .unwrap();
        add_file(&mut b, &format!("{id}/VERSION"), b"1.0");
        add_file(&mut b, &format!("{id}/json"), br#"{"id":"x"}"#);
        let d = digest(t);
        match seen.iter().find(|(dd, _)| *dd == d) {
            Some((_, first)) => add_symlink(&mut b, &path, &format!("../{first}")),
            None => add_file(&mut b, &path, t),
        }
        seen.push((d, path.clone()));
        layer_paths.push(path);
    }
    add_file(&mut b, &format!("{config_hex}.json"), &config);
    let manifest =
        json!([{"Config": format!("{config_hex}.json"), "RepoTags": [tag], "Layers": layer_paths}]);
    add_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    add_file(&mut b, "repositories", b"{}");
    b.finish().unwrap();
    format!("sha256:{config_hex}")
}

/// The Docker ≥ 25 form: an OCI layout plus `manifest.json` naming `blobs/sha256/<hex>`.
/// `images` are (layers, platform, tag).
pub fn docker_oci(out: &Path, images: &[(Vec<LayerSpec>, &str, &str)]) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    add_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut entries = Vec::new();
    let mut index = Vec::new();
    let mut written: Vec<String> = Vec::new();
    let mut put = |b: &mut tar::Builder<fs::File>, bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        let path = format!("blobs/sha256/{hex}");
        if !written.contains(&hex) {
            add_file(b, &path, bytes);
            written.push(hex);
        }
        path
    };
    for (layers, platform, tag) in images {
        let (os, arch, variant) = split_platform(platform);
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = config_json(os, arch, variant, &diff_ids);
        let config_path = put(&mut b, &config);
        let mut layer_paths = Vec::new();
        let mut descs = Vec::new();
        for l in layers {
            layer_paths.push(put(&mut b, &l.blob));
            descs.push(
                json!({"mediaType": l.media_type, "digest": digest(&l.blob), "size": l.blob.len()}),
            );
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        put(&mut b, &manifest);
        index.push(
            json!({"mediaType": OCI_MANIFEST, "digest": digest(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": tag}}),
        );
        entries.push(json!({"Config": config_path, "RepoTags": [tag], "Layers": layer_paths}));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
    add_file(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    add_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&entries).unwrap(),
    );
    b.finish().unwrap();
}

/// Reads a layer through its verified reader, decompresses it and checks that the tar's
/// sha256 is the layer's diff id. Returns the tar.
pub fn read_layer(layer: &Layer) -> anyhow::Result<Vec<u8>> {
    let mut reader = layer.open()?;
    let mut tar = Vec::new();
    match layer.compression {
        Compression::None => {
            reader.read_to_end(&mut tar)?;
        }
        Compression::Gzip => {
            flate2::read::GzDecoder::new(&mut reader).read_to_end(&mut tar)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(&mut reader)?.read_to_end(&mut tar)?;
        }
    }
    reader.finish()?;
    anyhow::ensure!(
        digest(&tar) == layer.diff_id.as_str(),
        "diff id of layer {} differs",
        layer.index
    );
    Ok(tar)
}

//! A containerd-shaped EROFS snapshotter root for the daemon's tests: each layer made the
//! way containerd's differ makes it (`mkfs.erofs --tar=f --aufs -Enoinline_data -b4096`
//! from erofs-utils ≥ 1.8, then containerd's dm-verity layout: veritysetup superblock at
//! the end of the image, tree after it, `layer.erofs.dmverity` sidecar), or by layerpass's
//! own converter, at `<root>/snapshots/<id>/layer.erofs`; and the mount lists containerd's
//! snapshotter returns for it (reference §5).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use layerpass::verity::{FormatOptions, format_file};
use layerpass_test_support::erofs_utils::ErofsUtils;
use serde_json::{Value, json};

/// How a layer blob is made.
#[derive(Debug, Clone)]
pub enum Maker {
    /// containerd's differ: `mkfs.erofs --tar=f` then containerd's verity layout.
    Mkfs(ErofsUtils),
    /// `layerpass`'s converter (same layout, reproducible bytes).
    Converter,
}

/// `<root>/snapshots/<id>`.
#[must_use]
pub fn snapshot_dir(root: &Path, id: u32) -> PathBuf {
    root.join("snapshots").join(id.to_string())
}

/// Makes snapshot `id`'s `layer.erofs` (+ sidecar) from `tar`; returns the blob and its root
/// hash.
pub fn make_layer(
    root: &Path,
    id: u32,
    tar: &Path,
    maker: &Maker,
) -> anyhow::Result<(PathBuf, String)> {
    let dir = snapshot_dir(root, id);
    std::fs::create_dir_all(&dir)?;
    let blob = dir.join("layer.erofs");
    match maker {
        Maker::Mkfs(erofs) => {
            let uuid = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("erofs:blobs/{id}").as_bytes(),
            );
            let status = erofs
                .command("mkfs.erofs")
                .args([
                    "--tar=f",
                    "--aufs",
                    "--quiet",
                    "-Enoinline_data",
                    "-b4096",
                    "-U",
                ])
                .arg(uuid.to_string())
                .arg(&blob)
                .stdin(Stdio::from(std::fs::File::open(tar)?))
                .status()
                .context("mkfs.erofs")?;
            ensure!(
                status.success(),
                "mkfs.erofs --tar=f failed on {}",
                tar.display()
            );
            let report = format_file(&blob, &FormatOptions::containerd(), None)?;
            Ok((blob, report.root_hash))
        }
        Maker::Converter => {
            let report = layerpass::erofs::convert_layer(
                std::fs::File::open(tar)?,
                &blob,
                &layerpass::erofs::ConvertOptions::default(),
            )?;
            Ok((blob, report.root_hash.context("no root hash")?))
        }
    }
}

/// One `erofs` mount of snapshot `id`, with its dm-verity sidecar path.
#[must_use]
pub fn erofs_mount(root: &Path, id: u32) -> Value {
    let blob = snapshot_dir(root, id).join("layer.erofs");
    json!({
        "type": "erofs",
        "source": blob,
        "options": ["ro", "loop", format!("X-containerd.dmverity={}.dmverity", blob.display())],
    })
}

/// The block-mode mount list of an active snapshot `container` over `layers` (top first),
/// before activation (`mkfs/ext4` with the size), as in reference §5.4.
#[must_use]
pub fn block_mode_mounts(root: &Path, container: u32, layers: &[u32], size: u64) -> Value {
    let rw = snapshot_dir(root, container).join("rwlayer.img");
    let mut list = vec![json!({
        "type": "mkfs/ext4",
        "source": rw,
        "options": ["X-containerd.mkfs.fs=ext4", format!("X-containerd.mkfs.size={size}"), "rw", "loop"],
    })];
    list.extend(layers.iter().map(|&id| erofs_mount(root, id)));
    list.push(json!({
        "type": "format/mkdir/overlay",
        "source": "overlay",
        "options": [
            "X-containerd.mkdir.path={{ mount 0 }}/upper:0755",
            "X-containerd.mkdir.path={{ mount 0 }}/work:0755",
            "workdir={{ mount 0 }}/work",
            "upperdir={{ mount 0 }}/upper",
            format!("lowerdir={{{{ overlay 1 {} }}}}", layers.len()),
        ],
    }));
    Value::Array(list)
}

/// The non-block mount list of an active snapshot: the layers and an overlay with host
/// upper and work directories (which a VM cannot use; the daemon gives its own upper).
#[must_use]
pub fn overlay_mounts(root: &Path, container: u32, layers: &[u32]) -> Value {
    let dir = snapshot_dir(root, container);
    let mut list: Vec<Value> = layers.iter().map(|&id| erofs_mount(root, id)).collect();
    let lower = if layers.len() == 1 {
        "lowerdir={{ mount 0 }}".to_owned()
    } else {
        format!("lowerdir={{{{ overlay 0 {} }}}}", layers.len() - 1)
    };
    list.push(json!({
        "type": "format/mkdir/overlay",
        "source": "overlay",
        "options": [
            format!("workdir={}", dir.join("work").display()),
            format!("upperdir={}", dir.join("fs").display()),
            lower,
        ],
    }));
    Value::Array(list)
}

/// A tar of `files` (path, contents) made under `dir/name`.
pub fn layer_tar(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> anyhow::Result<PathBuf> {
    let tree = dir.join(name);
    for (path, contents) in files {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().context("no parent")?)?;
        std::fs::write(&p, contents)?;
    }
    let tar = dir.join(format!("{name}.tar"));
    crate::tools::run(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    Ok(tar)
}

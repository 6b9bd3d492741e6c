//! `layerpass convert image --index` (`LayerFormat::Index`): every layer becomes an index
//! layer in the output directory. A plain layer's tar is referenced where it is in the image
//! (its blob file, or its member of a `docker save` archive at its offset) and nothing of it
//! is copied; a gzip layer is decompressed once beside its metadata. Each layer's served
//! disk is `[META][TAR][zeros][TREE]` with the root hash `convert layer --index` gives the
//! same tar; a second run reuses everything; a cached tar of the wrong length is made
//! again; an in-place tar that changed is refused; a wrong diff ID leaves nothing; the
//! daemon exports such layers; reference values `--as layerpass-index` match them.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod image_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_support::*;
use layerpass::convert::{
    ImageConvertError, ImageConvertOptions, ImageConvertReport, LayerConvertError,
    LayerConvertReport, LayerFormat, LayerOutcome, OutputLayout, convert_image,
};
use layerpass::erofs::index::{IndexOptions, index_layer, tree_path_for};
use layerpass::export::Disk;
use layerpass::image::ImageError;
use layerpass::verity::{Sidecar, sidecar_path};
use serde_json::Value;
use vm_memory::VolatileSlice;

fn opts(out: &Path) -> ImageConvertOptions {
    ImageConvertOptions {
        format: LayerFormat::Index,
        ..ImageConvertOptions::new(OutputLayout::Flat, out)
    }
}

fn convert(image: &Path, out: &Path) -> Result<ImageConvertReport, ImageConvertError> {
    convert_image(image, &opts(out), &|_| {})
}

/// Every file under `dir` with its size, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        if md.is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push((e.path(), md.len()));
        }
    }
    out.sort();
    out
}

/// Checks one index layer against the tar it must serve: its files, its served disk
/// `[META][TAR][zeros to 4096][TREE padded]`, and metadata and root hash equal to what
/// `index_layer` makes of the same tar (written to a file of its own).
fn check_layer(l: &LayerConvertReport, tar: &[u8], scratch: &Path) {
    let files = l.index_files.as_ref().expect("an index layer");
    assert_eq!(files.tar_bytes, tar.len() as u64);
    assert_eq!(files.tree, tree_path_for(&l.path));
    let meta = fs::read(&l.path).unwrap();
    assert_eq!(meta.len() as u64, l.size);
    let sidecar = Sidecar::read(&sidecar_path(&l.path)).unwrap();
    assert_eq!(sidecar.roothash, l.root_hash.to_hex());
    assert_eq!(sidecar.hashoffset, l.hash_offset);
    assert_eq!(
        l.hash_offset,
        ((meta.len() + tar.len()) as u64).div_ceil(4096) * 4096
    );

    // the same tar as a file, indexed on its own: same metadata, same root hash
    let own = scratch.join(format!("own-{}", l.index));
    fs::create_dir_all(&own).unwrap();
    let own_tar = own.join("layer.tar");
    fs::write(&own_tar, tar).unwrap();
    let own_report = index_layer(&own_tar, &own.join("meta"), &IndexOptions::default()).unwrap();
    assert_eq!(
        own_report.root_hash,
        l.root_hash.to_hex(),
        "layer {}",
        l.index
    );
    assert_eq!(fs::read(own.join("meta")).unwrap(), meta);

    // the disk the export side serves from the report's spec
    let spec = layerpass::export::spec::LayerFileSpec::parse(&l.spec()).unwrap();
    assert_eq!(spec.index.as_ref(), Some(&files.tar));
    let disk = spec.layer_disk(None).unwrap();
    assert_eq!(disk.logical_block_size(), 512);
    let mut served = vec![0u8; disk.size() as usize];
    disk.read_at(0, &[VolatileSlice::from(served.as_mut_slice())])
        .unwrap();
    let pad = |mut b: Vec<u8>| {
        b.resize(b.len().div_ceil(4096) * 4096, 0);
        b
    };
    let mut expected = meta.clone();
    expected.extend_from_slice(tar);
    let mut expected = pad(expected);
    expected.extend(pad(fs::read(&files.tree).unwrap()));
    assert!(served == expected, "layer {}: served disk", l.index);
    let mapping = layerpass::plan::layer_mapping(&l.file_spec()).unwrap();
    assert_eq!(
        (mapping.data_block_size, mapping.hash_block_size),
        (512, 4096)
    );
    assert_eq!(hex::encode(&mapping.root_hash), l.root_hash.to_hex());
}

#[test]
fn an_oci_layout_plain_in_place_gzip_decompressed_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let big: Vec<u8> = (0..70_001u32).map(|i| (i % 253) as u8).collect();
    let plain_tar = layer_tar(&[("etc/os-release", b"plain\n"), ("usr/lib/big", &big)]);
    let gzip_tar = layer_tar(&[
        ("usr/bin/tool", b"tool"),
        ("usr/share/doc", &[b'x'; 10_000]),
    ]);
    let layers = vec![
        LayerSpec::new(LAYER_TAR, &plain_tar),
        LayerSpec::new(LAYER_GZIP, &gzip_tar),
    ];
    let manifest = oci.image(&layers, None);
    oci.write_index(vec![manifest.clone()]);
    let plain_blob = oci.blob_path(&oci.manifest(&manifest)["layers"][0]);
    let plain_mtime = fs::metadata(&plain_blob).unwrap().mtime_nsec();
    let out = dir.path().join("cache");

    let report = convert(&layout, &out).unwrap();
    assert_eq!(report.layer_format, LayerFormat::Index);
    let [plain, gz] = &report.layers[..] else {
        panic!("{} layers", report.layers.len());
    };
    for l in &report.layers {
        assert_eq!(l.outcome, LayerOutcome::Converted);
        assert_eq!(
            l.path,
            out.join(format!("{}.erofs", l.diff_id.hex())),
            "keyed by diff ID"
        );
    }
    // the plain layer: its blob file in place, nothing copied
    let p = plain.index_files.as_ref().unwrap();
    assert_eq!(p.tar.path, plain_blob.canonicalize().unwrap());
    assert_eq!(p.tar.offset, 0);
    assert!(!p.in_cache);
    assert_eq!(
        plain.spec(),
        format!("{}+{}", plain.path.display(), p.tar.path.display())
    );
    // the gzip layer: decompressed once beside its metadata
    let g = gz.index_files.as_ref().unwrap();
    assert_eq!(
        g.tar.path,
        PathBuf::from(format!("{}.tar", gz.path.display()))
    );
    assert!(g.in_cache);
    assert_eq!(fs::read(&g.tar.path).unwrap(), gzip_tar);
    check_layer(plain, &plain_tar, dir.path());
    check_layer(gz, &gzip_tar, dir.path());

    // the cache holds metadata, trees and sidecars, the plain layer's tar stamp (the stat
    // data of the blob it points into), and only the gzip layer's tar
    let cached = files(&out);
    let names: Vec<String> = cached
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 8, "{names:?}");
    let stamps: Vec<_> = names.iter().filter(|n| n.ends_with(".tarstamp")).collect();
    assert_eq!(stamps, [&format!("{}.erofs.tarstamp", plain.diff_id.hex())]);
    let tars: Vec<_> = names.iter().filter(|n| n.ends_with(".tar")).collect();
    assert_eq!(tars, [&format!("{}.erofs.tar", gz.diff_id.hex())]);
    let plain_bytes: u64 = cached
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains(plain.diff_id.hex()))
        .map(|(_, n)| n)
        .sum();
    let tree_len = fs::metadata(&p.tree).unwrap().len();
    let sidecar_len = fs::metadata(&plain.sidecar).unwrap().len();
    let stamp_len = fs::metadata(format!("{}.tarstamp", plain.path.display()))
        .unwrap()
        .len();
    assert!(stamp_len < 1024, "{stamp_len}");
    assert_eq!(
        plain_bytes,
        plain.size + tree_len + sidecar_len + stamp_len,
        "no tar bytes copied"
    );
    assert_eq!(
        fs::read(&plain_blob).unwrap(),
        layers[0].blob,
        "the blob untouched"
    );
    assert_eq!(fs::metadata(&plain_blob).unwrap().mtime_nsec(), plain_mtime);

    // a second run reuses both, rewriting nothing
    let inodes = |r: &ImageConvertReport| -> Vec<u64> {
        r.layers
            .iter()
            .map(|l| fs::metadata(&l.path).unwrap().ino())
            .collect()
    };
    let before = inodes(&report);
    let again = convert(&layout, &out).unwrap();
    assert!(again.layers.iter().all(LayerConvertReport::skipped));
    assert_eq!(inodes(&again), before);
    assert_eq!(again.layers[0].index_files, report.layers[0].index_files);
    assert_eq!(again.layers[1].root_hash, report.layers[1].root_hash);

    // the cached tar cut short: that layer is made again, the other reused
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&g.tar.path)
        .unwrap();
    f.set_len(gzip_tar.len() as u64 - 512).unwrap();
    drop(f);
    let again = convert(&layout, &out).unwrap();
    assert_eq!(again.layers[0].outcome, LayerOutcome::Skipped);
    assert_eq!(again.layers[1].outcome, LayerOutcome::Converted);
    assert_eq!(fs::read(&g.tar.path).unwrap(), gzip_tar);
    // a missing tree too
    fs::remove_file(&p.tree).unwrap();
    let again = convert(&layout, &out).unwrap();
    assert_eq!(again.layers[0].outcome, LayerOutcome::Converted);
    assert_eq!(again.layers[1].outcome, LayerOutcome::Skipped);
    check_layer(&again.layers[0], &plain_tar, &dir.path().join("again"));

    // the in-place tar changed to another length: refused (the image no longer matches
    // its descriptor), and the earlier index left as it was
    let meta_before = fs::read(&plain.path).unwrap();
    let mut longer = layers[0].blob.clone();
    longer.extend_from_slice(&[0u8; 512]);
    fs::write(&plain_blob, &longer).unwrap();
    let e = convert(&layout, &out).unwrap_err();
    let source = first_layer_error(&e);
    assert!(
        matches!(
            source,
            LayerConvertError::Blob(ImageError::SizeMismatch { .. })
        ),
        "{source}"
    );
    assert_eq!(fs::read(&plain.path).unwrap(), meta_before);

    // the blob rewritten with its own bytes: its stat data changed, so it is read again
    // (and passes); then reused while nothing changes
    fs::write(&plain_blob, &layers[0].blob).unwrap();
    let again = convert(&layout, &out).unwrap();
    assert_eq!(again.layers[0].outcome, LayerOutcome::Converted);
    assert_eq!(again.layers[0].root_hash, report.layers[0].root_hash);
    let again = convert(&layout, &out).unwrap();
    assert_eq!(again.layers[0].outcome, LayerOutcome::Skipped);
    // one byte changed at the same size, the mtime set back: not reused; read again, the
    // blob's digest no longer matches, the earlier index stays as it was
    let mtime = fs::metadata(&plain_blob).unwrap().modified().unwrap();
    let mut flipped = layers[0].blob.clone();
    flipped[600] ^= 0xff;
    fs::write(&plain_blob, &flipped).unwrap();
    fs::File::options()
        .write(true)
        .open(&plain_blob)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let e = convert(&layout, &out).unwrap_err();
    let source = first_layer_error(&e);
    assert!(
        matches!(
            source,
            LayerConvertError::Blob(ImageError::DigestMismatch { .. })
        ),
        "{source}"
    );
    assert_eq!(fs::read(&plain.path).unwrap(), meta_before);
}

/// The layer error of a conversion that failed on its first layer.
fn first_layer_error(e: &ImageConvertError) -> &LayerConvertError {
    let ImageConvertError::Layer {
        index: 0, source, ..
    } = e
    else {
        panic!("{e}");
    };
    source
}

#[test]
fn a_wrong_diff_id_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (i, media) in [LAYER_TAR, LAYER_GZIP].into_iter().enumerate() {
        let layout = dir.path().join(format!("layout-{i}"));
        let oci = OciDir::new(&layout);
        let tar = layer_tar(&[("a", b"a")]);
        let mut layer = LayerSpec::new(media, &tar);
        layer.diff_id = digest(b"another tar");
        oci.write_index(vec![oci.image(&[layer], None)]);
        let out = dir.path().join(format!("cache-{i}"));
        let e = convert(&layout, &out).unwrap_err();
        let ImageConvertError::Layer { source, .. } = &e else {
            panic!("{e}");
        };
        assert!(
            matches!(**source, LayerConvertError::DiffIdMismatch { .. }),
            "{media}: {source}"
        );
        assert_eq!(files(&out), [], "{media}: nothing left");
    }
}

/// A `docker save` archive (legacy layout: a repeated layer is a symlink to the first) with
/// plain layers, through the command line: each tar is referenced inside the archive at
/// its member's offset, the JSON names it, and the cache holds no tar at all.
#[test]
fn a_docker_save_archive_is_referenced_at_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let tars = vec![
        layer_tar(&[("etc/hostname", b"one\n")]),
        layer_tar(&[("usr/bin/app", &[7u8; 5000])]),
        layer_tar(&[("etc/hostname", b"one\n")]),
    ];
    let archive = dir.path().join("image.tar");
    docker_legacy(&archive, &tars, "linux/amd64", "x:1");
    let archive_bytes = fs::read(&archive).unwrap();
    let out = dir.path().join("cache");
    let o = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["convert", "image"])
        .arg(&archive)
        .arg(&out)
        .args(["--index", "--json", "--layout", "flat"])
        .env("LAYERPASS_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["layer_format"], "index");
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let abs_archive = std::path::absolute(&archive).unwrap();
    for (l, tar) in layers.iter().zip(&tars) {
        assert_eq!(l["tar"].as_str().unwrap(), abs_archive.to_str().unwrap());
        assert_eq!(l["tar_in_cache"], false);
        let offset = l["tar_offset"].as_u64().unwrap();
        assert!(offset > 0 && offset % 512 == 0, "{offset}");
        assert_eq!(l["tar_bytes"].as_u64().unwrap(), tar.len() as u64);
        let at = &archive_bytes[offset as usize..offset as usize + tar.len()];
        assert!(at == tar.as_slice(), "the tar is at its offset");
        let meta = l["path"].as_str().unwrap();
        assert_eq!(
            l["spec"],
            format!("{meta}+{}#{offset}", abs_archive.display())
        );
        assert_eq!(l["tree"].as_str().unwrap(), format!("{meta}.tree"));
    }
    // the repeated layer is the first one, indexed once
    assert_eq!(layers[2]["skipped"], true);
    assert_eq!(layers[2]["path"], layers[0]["path"]);
    assert!(
        files(&out)
            .iter()
            .all(|(p, _)| !p.to_string_lossy().ends_with(".tar"))
    );

    // the library's report gives the same specs, and they serve the tars
    let report = convert(&archive, &out).unwrap();
    for (l, tar) in report.layers.iter().zip(&tars) {
        assert!(l.skipped());
        check_layer(l, tar, dir.path());
    }
    assert_eq!(
        fs::read(&archive).unwrap(),
        archive_bytes,
        "the archive untouched"
    );
}

/// The daemon with `layer_format = "index"` exports an image's layers as index layers into
/// `index-layers/` of its cache: per-layer disks and a composite (512-byte GPT) at 512-byte
/// blocks, planned at 512/4096 verity with the conversion's root hashes; a disk reopened
/// from its record (a restart) is the same; a request naming the full format gets full
/// layers from the same daemon.
#[test]
fn the_daemon_exports_index_layers_per_layer_and_composite() {
    use layerpass::daemon::config::{Config, ExportMode, VerityMode};
    use layerpass::daemon::disks::open_disk;
    use layerpass::daemon::{Daemon, ExportSpec, SourceSpec};
    use layerpass::state::DiskBacking;

    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let plain_tar = layer_tar(&[("etc/os-release", b"plain\n")]);
    let gzip_tar = layer_tar(&[("usr/bin/tool", &[3u8; 9000])]);
    let layers = vec![
        LayerSpec::new(LAYER_TAR, &plain_tar),
        LayerSpec::new(LAYER_GZIP, &gzip_tar),
    ];
    let manifest = oci.image(&layers, None);
    oci.write_index(vec![manifest.clone()]);
    let plain_blob = oci
        .blob_path(&oci.manifest(&manifest)["layers"][0])
        .canonicalize()
        .unwrap();
    let run = dir.path().join("run");
    let config = Config {
        state_dir: dir.path().join("state"),
        cache_dir: dir.path().join("cache"),
        api_socket: run.join("api.sock"),
        run_dir: run,
        verity: VerityMode::RequireSidecar,
        layer_format: LayerFormat::Index,
        ..Config::default()
    };
    let daemon = Daemon::start(config.clone()).unwrap();
    for (i, mode) in [ExportMode::PerLayer, ExportMode::Composite]
        .into_iter()
        .enumerate()
    {
        let spec = ExportSpec {
            sandbox: format!("sb{i}"),
            container: "c1".into(),
            source: SourceSpec::Image {
                path: layout.clone(),
                platform: None,
                format: None,
            },
            mode: Some(mode),
            upper: None,
            guest: None,
        };
        let outcome = daemon.export(&spec).unwrap();
        // the plan: top layer first, 512-byte data blocks, 4096-byte hash blocks
        assert_eq!(outcome.plan.layers.len(), 2);
        for (planned, tar) in outcome.plan.layers.iter().zip([&gzip_tar, &plain_tar]) {
            assert_eq!(planned.digest, digest(tar));
            let v = planned.verity.as_ref().unwrap();
            assert_eq!((v.data_block_size, v.hash_block_size), (512, 4096));
        }
        let layer_disks: Vec<_> = outcome
            .record
            .disks
            .iter()
            .filter(|d| !matches!(d.backing, DiskBacking::Scratch { .. }))
            .collect();
        match mode {
            ExportMode::PerLayer => {
                assert_eq!(layer_disks.len(), 2);
                let DiskBacking::Layer { blob, index, .. } = &layer_disks[1].backing else {
                    panic!("{:?}", layer_disks[1].backing);
                };
                // the bottom (plain) layer's tar is the image's blob file, in place
                assert!(blob.starts_with(dir.path().join("cache/index-layers")));
                let index = index.as_ref().unwrap();
                assert_eq!(
                    (index.path.as_path(), index.offset),
                    (plain_blob.as_path(), 0)
                );
            }
            ExportMode::Composite => {
                assert_eq!(layer_disks.len(), 1);
                let DiskBacking::Composite { layers } = &layer_disks[0].backing else {
                    panic!("{:?}", layer_disks[0].backing);
                };
                assert!(layers.iter().all(|l| l.index.is_some()));
            }
        }
        for d in layer_disks {
            let reopened = open_disk(d).unwrap();
            assert_eq!(reopened.logical_block_size(), 512, "{mode:?}");
            assert_eq!(reopened.size(), d.size);
        }
        daemon.unexport(&format!("sb{i}"), "c1").unwrap();
    }
    // a request naming the full format overrides the configured index: 4096-byte verity,
    // full blobs in `layers/`
    let spec = ExportSpec {
        sandbox: "sb-full".into(),
        container: "c1".into(),
        source: SourceSpec::Image {
            path: layout.clone(),
            platform: None,
            format: Some(LayerFormat::Full),
        },
        mode: Some(ExportMode::PerLayer),
        upper: None,
        guest: None,
    };
    let outcome = daemon.export(&spec).unwrap();
    for planned in &outcome.plan.layers {
        let v = planned.verity.as_ref().unwrap();
        assert_eq!((v.data_block_size, v.hash_block_size), (4096, 4096));
    }
    for d in &outcome.record.disks {
        if let DiskBacking::Layer { blob, index, .. } = &d.backing {
            assert!(index.is_none());
            assert!(
                blob.starts_with(dir.path().join("cache/layers")),
                "{blob:?}"
            );
        }
    }
    daemon.unexport("sb-full", "c1").unwrap();
    daemon.shutdown();
    // nothing of the image was copied into the cache but the gzip layer's tar
    let cached = files(&dir.path().join("cache"));
    let tars: Vec<_> = cached
        .iter()
        .filter(|(p, _)| p.to_string_lossy().ends_with(".tar"))
        .collect();
    assert_eq!(tars.len(), 1, "{cached:?}");
    assert_eq!(tars[0].1, gzip_tar.len() as u64);
}

/// The reference values of a confidential `run --index` (`attest reference-values --as
/// layerpass-index`), computed from the image alone in a scratch directory, are the root
/// hashes `convert image --index` gives, for a plain and a gzip layer, from an OCI layout
/// and from a `docker save` archive; nothing is left in the scratch directory.
#[test]
fn reference_values_as_index_layers_equal_the_conversion() {
    use layerpass::attest::reference::{Builder, Input, compute};

    let dir = tempfile::tempdir().unwrap();
    let plain_tar = layer_tar(&[("a/plain", &[1u8; 3000])]);
    let gzip_tar = layer_tar(&[("b/gz", &[2u8; 7000])]);
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let layers = vec![
        LayerSpec::new(LAYER_TAR, &plain_tar),
        LayerSpec::new(LAYER_GZIP, &gzip_tar),
    ];
    oci.write_index(vec![oci.image(&layers, None)]);
    let archive = dir.path().join("image.tar");
    docker_legacy(
        &archive,
        &[plain_tar.clone(), gzip_tar],
        "linux/amd64",
        "x:1",
    );
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    for image in [&layout, &archive] {
        let converted = convert(image, &dir.path().join("cache")).unwrap();
        let reference = compute(
            &Input::Image {
                path: image.clone(),
                platform: None,
            },
            &Builder::LayerpassIndex { mkfs_time: 0 },
            Some(&scratch),
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(reference.layers.len(), 2);
        for (r, c) in reference.layers.iter().zip(&converted.layers) {
            assert_eq!(r.diff_id, c.diff_id);
            assert_eq!(r.root_hash, c.root_hash.to_hex(), "{}", image.display());
            assert_eq!(r.hash_offset, c.hash_offset);
            assert_eq!((r.data_block_size, r.hash_block_size), (512, 4096));
        }
        assert_eq!(files(&scratch), [], "nothing left in the scratch directory");
    }
}

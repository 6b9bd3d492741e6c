//! Reading real OCI layouts and `docker save` archives built here: layer order, digests,
//! media types, platform choice, nested indexes, and every kind of bad input.

// Helpers of a test binary are test code: unwrap as in #[test] functions.
#![allow(clippy::unwrap_used)]

mod image_support;

use std::fs;
use std::io::Read;

use image_support::*;
use layerpass::image::{
    Compression, ImageError, Platform, SourceFormat, into_image_error, open_image,
};
use serde_json::json;

fn platform(s: &str) -> Platform {
    s.parse().expect("test platforms are valid")
}

/// Reads a layer to the end and returns the verification error it must produce.
fn read_error(layer: &layerpass::image::Layer) -> ImageError {
    let mut r = match layer.open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut sink = Vec::new();
    match r.read_to_end(&mut sink) {
        Ok(_) => panic!("layer {} read without error", layer.index),
        Err(e) => into_image_error(e, "test"),
    }
}

#[test]
fn oci_layout_three_compressions_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let layers = three_layers("a");
    let m = oci.image(&layers, None);
    oci.write_index(vec![m.clone()]);

    let image = open_image(dir.path(), None).unwrap();
    assert_eq!(image.format, SourceFormat::OciLayout);
    assert_eq!(
        image.manifest_digest.as_ref().unwrap().as_str(),
        m["digest"].as_str().unwrap()
    );
    assert_eq!(image.platform, Some(platform("linux/amd64")));
    assert_eq!(image.layers.len(), 3);
    let kinds: Vec<Compression> = image.layers.iter().map(|l| l.compression).collect();
    assert_eq!(
        kinds,
        [Compression::None, Compression::Gzip, Compression::Zstd]
    );
    for (l, spec) in image.layers.iter().zip(&layers) {
        assert_eq!(l.digest.as_str(), digest(&spec.blob));
        assert_eq!(l.size, spec.blob.len() as u64);
        assert_eq!(l.media_type, spec.media_type);
        assert_eq!(l.diff_id.as_str(), spec.diff_id);
        read_layer(l).unwrap();
    }
}

#[test]
fn multi_platform_index_default_requested_and_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let arm64 = oci.image(&three_layers("arm64"), Some("linux/arm64/v8"));
    let amd64 = oci.image(&three_layers("amd64"), Some("linux/amd64"));
    let armv7 = oci.image(&three_layers("armv7"), Some("linux/arm/v7"));
    oci.write_index(vec![arm64.clone(), amd64.clone(), armv7.clone()]);

    let img = open_image(dir.path(), None).unwrap();
    assert_eq!(
        img.manifest_digest.unwrap().as_str(),
        amd64["digest"].as_str().unwrap()
    );
    let img = open_image(dir.path(), Some(&platform("linux/arm64"))).unwrap();
    assert_eq!(
        img.manifest_digest.unwrap().as_str(),
        arm64["digest"].as_str().unwrap()
    );
    assert_eq!(img.platform, Some(platform("linux/arm64/v8")));
    let img = open_image(dir.path(), Some(&platform("linux/arm/v7"))).unwrap();
    assert_eq!(
        img.manifest_digest.unwrap().as_str(),
        armv7["digest"].as_str().unwrap()
    );
    for l in &img.layers {
        read_layer(l).unwrap();
    }

    let e = open_image(dir.path(), Some(&platform("linux/s390x"))).unwrap_err();
    assert!(matches!(e, ImageError::PlatformNotFound { .. }), "{e}");
    let msg = e.to_string();
    for p in [
        "linux/s390x",
        "linux/arm64/v8",
        "linux/amd64",
        "linux/arm/v7",
        "index.json",
    ] {
        assert!(msg.contains(p), "{p} missing from: {msg}");
    }
    let e = open_image(dir.path(), Some(&platform("linux/arm/v6"))).unwrap_err();
    assert!(matches!(e, ImageError::PlatformNotFound { .. }), "{e}");
}

#[test]
fn nested_index_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let amd64 = oci.image(&three_layers("n-amd64"), Some("linux/amd64"));
    let arm64 = oci.image(&three_layers("n-arm64"), Some("linux/arm64"));
    let inner = oci.index_blob(vec![arm64, amd64.clone()]);
    let outer = oci.index_blob(vec![inner]);
    let mut top = outer.clone();
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    oci.write_index(vec![top]);
    let img = open_image(dir.path(), None).unwrap();
    assert_eq!(
        img.manifest_digest.unwrap().as_str(),
        amd64["digest"].as_str().unwrap()
    );
    for l in &img.layers {
        read_layer(l).unwrap();
    }
    // A tampered nested index is caught when it is read.
    let path = oci.blob_path(&outer);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = b' ';
    fs::write(&path, bytes).unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains(outer["digest"].as_str().unwrap()),
        "{e}"
    );
}

#[test]
fn index_entries_that_are_not_images_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let amd64 = oci.image(&three_layers("s"), Some("linux/amd64"));
    let sig = oci.put("application/vnd.dev.cosign.artifact.sig.v1+json", b"{}");
    oci.write_index(vec![sig, amd64.clone()]);
    let img = open_image(dir.path(), None).unwrap();
    assert_eq!(
        img.manifest_digest.unwrap().as_str(),
        amd64["digest"].as_str().unwrap()
    );
}

#[test]
fn tampered_layer_blob_names_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let layers = three_layers("t");
    oci.write_index(vec![oci.image(&layers, None)]);
    let victim = dir
        .path()
        .join("blobs/sha256")
        .join(&digest(&layers[1].blob)[7..]);
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&victim, bytes).unwrap();

    let img = open_image(dir.path(), None).unwrap();
    read_layer(&img.layers[0]).unwrap();
    let e = read_error(&img.layers[1]);
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&digest(&layers[1].blob)) && msg.contains(&victim.display().to_string()),
        "{msg}"
    );
    // The gzip decoder may stop before the end; finish() still catches the mismatch.
    let mut r = img.layers[1].open().unwrap();
    let mut head = [0u8; 2];
    r.read_exact(&mut head).unwrap();
    assert!(matches!(r.finish(), Err(ImageError::DigestMismatch { .. })));
}

#[test]
fn tampered_manifest_and_config_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let m = oci.image(&three_layers("m"), None);
    oci.write_index(vec![m.clone()]);
    let config = oci.manifest(&m)["config"].clone();
    let cpath = oci.blob_path(&config);
    let mut c = fs::read(&cpath).unwrap();
    c[0] = b' ';
    fs::write(&cpath, &c).unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains(config["digest"].as_str().unwrap()),
        "{e}"
    );

    let mpath = oci.blob_path(&m);
    let mut bytes = fs::read(&mpath).unwrap();
    bytes[0] = b' ';
    fs::write(&mpath, bytes).unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(m["digest"].as_str().unwrap()), "{e}");
}

#[test]
fn wrong_size_in_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let m = oci.image(&three_layers("w"), None);
    let m = oci.edit_manifest(&m, |m| {
        m["layers"][2]["size"] = json!(m["layers"][2]["size"].as_u64().unwrap() + 1);
    });
    oci.write_index(vec![m]);
    let img = open_image(dir.path(), None).unwrap();
    let e = img.layers[2].open().unwrap_err();
    assert!(matches!(e, ImageError::SizeMismatch { .. }), "{e}");
    assert!(e.to_string().contains(img.layers[2].digest.as_str()), "{e}");

    // A wrong manifest size in index.json.
    let mut bad = oci.image(&three_layers("w2"), None);
    bad["size"] = json!(3);
    oci.write_index(vec![bad]);
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::SizeMismatch { .. }), "{e}");
}

#[test]
fn missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let layers = three_layers("mb");
    let m = oci.image(&layers, None);
    oci.write_index(vec![m.clone()]);
    fs::remove_file(
        dir.path()
            .join("blobs/sha256")
            .join(&digest(&layers[0].blob)[7..]),
    )
    .unwrap();
    let img = open_image(dir.path(), None).unwrap();
    let e = img.layers[0].open().unwrap_err();
    assert!(matches!(e, ImageError::MissingBlob { .. }), "{e}");
    assert!(e.to_string().contains(&digest(&layers[0].blob)), "{e}");

    fs::remove_file(oci.blob_path(&m)).unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::MissingBlob { .. }), "{e}");
    assert!(e.to_string().contains(m["digest"].as_str().unwrap()), "{e}");
}

#[test]
fn bad_digest_strings() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let good = oci.image(&three_layers("d"), None);
    let hex = &good["digest"].as_str().unwrap()[7..];
    for bad in [
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256:{}", &hex[2..]),
        hex.to_owned(),
        format!("sha256:../../../{}", &hex[9..]),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
    ] {
        let mut d = good.clone();
        d["digest"] = json!(bad);
        oci.write_index(vec![d]);
        let e = open_image(dir.path(), None).unwrap_err();
        assert!(matches!(e, ImageError::BadDigest { .. }), "{bad}: {e}");
        assert!(
            e.to_string().contains("manifests[0]") && e.to_string().contains(&bad),
            "{e}"
        );
    }
    // In a manifest's layer list, and in the config's diff ids.
    let m = oci.edit_manifest(&good, |m| m["layers"][1]["digest"] = json!("sha256:xyz"));
    oci.write_index(vec![m]);
    let e = open_image(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("layers[1]") && e.contains("sha256:xyz"), "{e}");
    let sha512 = format!("sha512:{hex}{hex}");
    let m = oci.edit_manifest(&good, |m| m["layers"][0]["digest"] = json!(sha512));
    oci.write_index(vec![m]);
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(
        matches!(e, ImageError::UnsupportedDigestAlgorithm { .. }),
        "{e}"
    );
}

#[test]
fn bad_diff_ids_in_config() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let layers = three_layers("c");
    let mut ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    ids[2] = "sha256:nothex".into();
    let config = oci.put(OCI_CONFIG, &config_json("linux", "amd64", None, &ids));
    let descs: Vec<_> = layers
        .iter()
        .map(|l| oci.put(&l.media_type, &l.blob))
        .collect();
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": descs});
    oci.write_index(vec![
        oci.put(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap()),
    ]);
    let e = open_image(dir.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("rootfs.diff_ids[2]") && e.contains("nothex"),
        "{e}"
    );
}

#[test]
fn diff_id_count_must_match_layers() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let layers = three_layers("n");
    let m = oci.image(&layers, None);
    let m = oci.edit_manifest(&m, |m| {
        m["layers"].as_array_mut().unwrap().pop();
    });
    oci.write_index(vec![m]);
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::LayerCountMismatch {
                diff_ids: 3,
                layers: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn non_distributable_and_unknown_media_types_are_rejected() {
    for media in [
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.v1.tar+lz4",
        "application/vnd.example.unknown",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let oci = OciDir::new(dir.path());
        let mut layers = three_layers("f");
        layers[1].media_type = media.to_owned();
        oci.write_index(vec![oci.image(&layers, None)]);
        let e = open_image(dir.path(), None).unwrap_err();
        assert!(matches!(e, ImageError::UnsupportedMediaType { .. }), "{e}");
        assert!(
            e.to_string().contains(media) && e.to_string().contains("layer 1"),
            "{e}"
        );
    }
    // An artifact manifest (config is not an image config).
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let m = oci.image(&three_layers("a"), None);
    let m = oci.edit_manifest(&m, |m| {
        m["config"]["mediaType"] = json!("application/vnd.cncf.helm.config.v1+json");
    });
    oci.write_index(vec![m]);
    let e = open_image(dir.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("helm") && e.contains("not a container image config"),
        "{e}"
    );
}

#[test]
fn layout_file_and_json_shape_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    oci.write_index(vec![oci.image(&three_layers("l"), None)]);
    fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(
        matches!(e, ImageError::NotOciLayout { .. }) && e.to_string().contains("2.0.0"),
        "{e}"
    );
    fs::remove_file(dir.path().join("oci-layout")).unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(e.to_string().contains("no oci-layout file"), "{e}");
    OciDir::new(dir.path());
    fs::write(
        dir.path().join("index.json"),
        br#"{"schemaVersion":2,"manifests":{}}"#,
    )
    .unwrap();
    let e = open_image(dir.path(), None).unwrap_err();
    assert!(
        matches!(e, ImageError::BadJson { .. }) && e.to_string().contains("index.json"),
        "{e}"
    );
    fs::write(
        dir.path().join("index.json"),
        br#"{"schemaVersion":1,"manifests":[]}"#,
    )
    .unwrap();
    let e = open_image(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("schemaVersion is 1"), "{e}");
    fs::write(
        dir.path().join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let e = open_image(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("no image manifests at all"), "{e}");
}

#[test]
fn blob_symlinked_out_of_the_layout_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let oci = OciDir::new(dir.path());
    let layers = three_layers("o");
    oci.write_index(vec![oci.image(&layers, None)]);
    let name = &digest(&layers[0].blob)[7..];
    let target = outside.path().join(name);
    fs::rename(dir.path().join("blobs/sha256").join(name), &target).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("blobs/sha256").join(name)).unwrap();
    let img = open_image(dir.path(), None).unwrap();
    let e = img.layers[0].open().unwrap_err();
    assert!(matches!(e, ImageError::OutsideLayout { .. }), "{e}");
}

#[test]
fn oci_layout_in_a_tar() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let m = oci.image(&three_layers("ta"), Some("linux/amd64"));
    oci.write_index(vec![m.clone()]);
    let archive = dir.path().join("image.tar");
    tar_dir(&layout, &archive);
    let img = open_image(&archive, None).unwrap();
    assert_eq!(img.format, SourceFormat::OciArchive);
    assert_eq!(
        img.manifest_digest.unwrap().as_str(),
        m["digest"].as_str().unwrap()
    );
    for l in &img.layers {
        read_layer(l).unwrap();
    }
}

#[test]
fn docker_save_legacy_form() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("legacy.tar");
    let base = layer_tar(&[("etc/hostname", b"legacy\n")]);
    let empty = layer_tar(&[]);
    let app = layer_tar(&[("app/bin", &[7u8; 70_000])]);
    // The empty layer appears twice: docker stores the second as a symlink to the first.
    let tars = vec![base, empty.clone(), app, empty];
    let config = docker_legacy(&archive, &tars, "linux/amd64", "example/legacy:1");
    let img = open_image(&archive, None).unwrap();
    assert_eq!(img.format, SourceFormat::DockerArchive);
    assert_eq!(img.config_digest.as_str(), config);
    assert_eq!(img.manifest_digest, None);
    assert_eq!(img.layers.len(), 4);
    for (l, t) in img.layers.iter().zip(&tars) {
        assert_eq!(l.compression, Compression::None);
        assert_eq!(l.digest, l.diff_id);
        assert_eq!(l.size, t.len() as u64);
        assert_eq!(read_layer(l).unwrap(), *t);
    }
}

#[test]
fn docker_save_oci_form_with_compressed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("oci-form.tar");
    let layers = three_layers("docker25");
    docker_oci(
        &archive,
        &[(layers.clone(), "linux/amd64", "example/app:latest")],
    );
    let img = open_image(&archive, None).unwrap();
    assert_eq!(img.format, SourceFormat::DockerArchive);
    let kinds: Vec<Compression> = img.layers.iter().map(|l| l.compression).collect();
    assert_eq!(
        kinds,
        [Compression::None, Compression::Gzip, Compression::Zstd]
    );
    for (l, spec) in img.layers.iter().zip(&layers) {
        assert_eq!(l.digest.as_str(), digest(&spec.blob));
        assert!(
            l.location().contains("oci-form.tar:blobs/sha256/"),
            "{}",
            l.location()
        );
        read_layer(l).unwrap();
    }
}

#[test]
fn docker_save_several_images_by_platform() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("multi.tar");
    docker_oci(
        &archive,
        &[
            (three_layers("arm"), "linux/arm64", "x:arm"),
            (three_layers("amd"), "linux/amd64", "x:amd"),
        ],
    );
    let amd = open_image(&archive, None).unwrap();
    assert_eq!(amd.platform, Some(platform("linux/amd64")));
    let arm = open_image(&archive, Some(&platform("linux/arm64"))).unwrap();
    assert_eq!(arm.platform, Some(platform("linux/arm64")));
    assert_ne!(amd.config_digest, arm.config_digest);
    let e = open_image(&archive, Some(&platform("linux/riscv64")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux/riscv64") && e.contains("linux/arm64") && e.contains("x:amd"),
        "{e}"
    );
}

#[test]
fn docker_save_tampered_and_missing_members() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("t.tar");
    let tars = vec![
        layer_tar(&[("a", b"first layer")]),
        layer_tar(&[("b", b"second layer")]),
    ];
    docker_legacy(&archive, &tars, "linux/amd64", "t:1");
    // Flip a byte of the second layer's content inside the archive.
    let mut bytes = fs::read(&archive).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"second layer")
        .unwrap();
    bytes[at] = b'S';
    fs::write(&archive, &bytes).unwrap();
    let img = open_image(&archive, None).unwrap();
    read_layer(&img.layers[0]).unwrap();
    let e = read_error(&img.layers[1]);
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("t.tar:") && e.to_string().contains("/layer.tar"),
        "{e}"
    );

    // A manifest.json naming a member that is not there.
    let archive2 = dir.path().join("missing.tar");
    let mut b = tar::Builder::new(fs::File::create(&archive2).unwrap());
    let config = config_json("linux", "amd64", None, &[digest(&tars[0])]);
    let config_name = format!("{}.json", sha256_hex(&config));
    add_file(&mut b, &config_name, &config);
    let manifest = json!([{"Config": config_name, "Layers": ["nope/layer.tar"]}]);
    add_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.finish().unwrap();
    drop(b);
    let e = open_image(&archive2, None).unwrap_err();
    assert!(
        matches!(e, ImageError::MissingMember { .. }) && e.to_string().contains("nope/layer.tar"),
        "{e}"
    );
}

#[test]
fn docker_save_bad_paths_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let tar_ = layer_tar(&[("a", b"x")]);
    let config = config_json("linux", "amd64", None, &[digest(&tar_)]);
    let config_name = format!("{}.json", sha256_hex(&config));
    let cases = [
        (
            json!([{"Config": config_name, "Layers": ["../../etc/passwd"]}]),
            "not a relative path",
        ),
        (
            json!([{"Config": "config.json", "Layers": ["l/layer.tar"]}]),
            "does not name its digest",
        ),
        (
            json!([{"Config": config_name, "Layers": []}]),
            "lists 1 diff ids but the manifest lists 0",
        ),
        (json!([]), "lists no images"),
        (json!({"Config": config_name}), "manifest.json"),
    ];
    for (i, (manifest, want)) in cases.into_iter().enumerate() {
        let archive = dir.path().join(format!("bad{i}.tar"));
        let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
        add_file(&mut b, &config_name, &config);
        add_file(&mut b, "config.json", &config);
        add_file(&mut b, "l/layer.tar", &tar_);
        add_file(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        b.finish().unwrap();
        drop(b);
        let e = open_image(&archive, None).unwrap_err().to_string();
        assert!(e.contains(want), "case {i}: {e}");
    }
    // Neither a docker archive nor an OCI layout.
    let archive = dir.path().join("plain.tar");
    fs::write(&archive, &tar_).unwrap();
    let e = open_image(&archive, None).unwrap_err().to_string();
    assert!(e.contains("neither manifest.json"), "{e}");
    // A compressed archive (`docker save | gzip`) is named as such.
    let gz = dir.path().join("img.tar.gz");
    fs::write(&gz, gzip(&fs::read(dir.path().join("bad0.tar")).unwrap())).unwrap();
    let e = open_image(&gz, None).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::CompressedArchive {
                compression: "gzip",
                ..
            }
        ),
        "{e}"
    );
    // Not a tar at all.
    let junk = dir.path().join("junk.tar");
    fs::write(&junk, vec![0xffu8; 2048]).unwrap();
    let e = open_image(&junk, None).unwrap_err();
    assert!(matches!(e, ImageError::BadArchive { .. }), "{e}");
}

use super::*;

pub(crate) fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

pub(crate) fn verity(n: u8) -> VerityParams {
    VerityParams {
        algorithm: HashAlgorithm::Sha256,
        format: 1,
        data_block_size: 4096,
        hash_block_size: 4096,
        data_blocks: 10,
        hash_start_block: 11,
        salt: vec![0; 32],
        root_hash: vec![n; 32],
        on_corruption: CorruptionMode::Eio,
    }
}

fn plan() -> MountPlan {
    MountPlan {
        container_id: "c1".into(),
        layers: (1..=3)
            .map(|n| LayerSpec {
                digest: digest(n),
                disk: DiskRef::Serial(format!("layer{n}")),
                fs_type: FsType::Erofs,
                verity: Some(verity(n)),
            })
            .collect(),
        upper: UpperSpec::Tmpfs {
            size_bytes: 1 << 20,
        },
        mount_point: None,
        overlay: OverlayOptions::default(),
    }
}

fn err_of(p: &MountPlan) -> String {
    let e = p.validate().unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");
    e.to_string()
}

#[test]
fn a_good_plan_passes() {
    plan().validate().unwrap();
}

#[test]
fn container_ids_are_checked() {
    for bad in ["", "-x", "a/b", "a b", ".", "..", &"x".repeat(129)] {
        let mut p = plan();
        p.container_id = bad.to_owned();
        assert!(err_of(&p).contains("container_id"), "{bad:?}");
    }
    let mut p = plan();
    p.container_id = "abc_1.2-3".into();
    p.validate().unwrap();
}

#[test]
fn layer_errors_name_the_layer_index_and_digest() {
    let mut p = plan();
    p.layers[1].digest = "sha256:XYZ".into();
    let m = err_of(&p);
    assert!(
        m.starts_with("container c1: layer 1 (sha256:XYZ): validate plan: digest"),
        "{m}"
    );

    let mut p = plan();
    p.layers[2].verity.as_mut().unwrap().root_hash = vec![1; 31];
    let m = err_of(&p);
    assert!(
        m.contains("layer 2 (") && m.contains("root_hash of 31 bytes: sha256 needs 32"),
        "{m}"
    );
}

#[test]
fn verity_fields_are_checked() {
    type Case = (fn(&mut VerityParams), &'static str);
    let cases: Vec<Case> = vec![
        (|v| v.format = 2, "format"),
        (|v| v.data_block_size = 3000, "data_block_size"),
        (|v| v.hash_block_size = 8192, "hash_block_size"),
        (|v| v.data_blocks = 0, "data_blocks"),
        (|v| v.hash_start_block = 5, "inside the data"),
        (|v| v.salt = vec![0; 257], "salt"),
        (|v| v.data_blocks = u64::MAX, "overflows"),
        (
            |v| {
                v.algorithm = HashAlgorithm::Sha512;
                v.hash_block_size = 64;
            },
            "hash_block_size",
        ),
    ];
    for (mutate, want) in cases {
        let mut p = plan();
        mutate(p.layers[0].verity.as_mut().unwrap());
        let m = err_of(&p);
        assert!(m.contains(want), "{want}: {m}");
    }
}

#[test]
fn disks_are_checked() {
    let mut p = plan();
    p.layers[0].disk = DiskRef::Serial(String::new());
    assert!(err_of(&p).contains(r#"disk serial "": is empty"#));
    p.layers[0].disk = DiskRef::Serial("x".repeat(21));
    assert!(err_of(&p).contains("at most 20"));
    p.layers[0].disk = DiskRef::Partition {
        serial: "c".into(),
        name: String::new(),
    };
    assert!(err_of(&p).contains(r#"partition name "": is empty"#));
    p.layers[0].disk = DiskRef::Partition {
        serial: "c".into(),
        name: "n".repeat(37),
    };
    assert!(err_of(&p).contains("36"));
    p.layers[0].disk = DiskRef::Partition {
        serial: "c".into(),
        name: "lp-ok".into(),
    };
    p.validate().unwrap();
}

#[test]
fn layers_count_upper_and_mount_point_are_checked() {
    let mut p = plan();
    p.layers.clear();
    assert!(err_of(&p).contains("layers is empty"));

    let mut p = plan();
    let l = p.layers[0].clone();
    p.layers = vec![l; MAX_LAYERS + 1];
    assert!(err_of(&p).contains("at most 500"));

    let mut p = plan();
    p.upper = UpperSpec::Tmpfs { size_bytes: 0 };
    assert!(err_of(&p).contains("size_bytes is 0"));
    p.upper = UpperSpec::Disk {
        disk: DiskRef::Serial("s".into()),
        fs_type: "vfat".into(),
    };
    assert!(err_of(&p).contains("vfat"));
    p.upper = UpperSpec::Disk {
        disk: DiskRef::Serial("layer1".into()),
        fs_type: "ext4".into(),
    };
    assert!(err_of(&p).contains("also a layer disk"));

    p.upper = UpperSpec::EncryptedDisk {
        disk: DiskRef::Serial(String::new()),
    };
    let m = err_of(&p);
    assert!(m.contains(r#"upper: disk serial "": is empty"#), "{m}");
    p.upper = UpperSpec::EncryptedDisk {
        disk: DiskRef::Partition {
            serial: "s".into(),
            name: "n".repeat(37),
        },
    };
    assert!(err_of(&p).contains("upper: "));
    p.upper = UpperSpec::EncryptedDisk {
        disk: DiskRef::Serial("layer2".into()),
    };
    assert!(err_of(&p).contains("also a layer disk"));
    p.upper = UpperSpec::EncryptedDisk {
        disk: DiskRef::Serial("scratch".into()),
    };
    p.validate().unwrap();

    // Relative to the agent's rootfs root, plain names only: an absolute path (another
    // container's directory, /etc, the run directory) is refused before anything else.
    for bad in [
        "/etc",
        "/run/layerpass/containers/evil",
        "/a/../b",
        "/",
        "../etc",
        "a/../../etc",
        "a//b",
        "./a",
    ] {
        let mut p = plan();
        p.mount_point = Some(PathBuf::from(bad));
        assert!(err_of(&p).contains("mount_point"), "{bad}");
    }
    let mut p = plan();
    p.mount_point = Some(PathBuf::from("web/rootfs"));
    p.validate().unwrap();
}

#[test]
fn digests_follow_the_shared_table() {
    for (value, good) in layerpass_types::digest::VECTORS {
        let mut p = plan();
        p.layers[0].digest = (*value).to_owned();
        // an empty digest in a plan means "unknown" (the root hash identifies the layer)
        assert_eq!(p.validate().is_ok(), *good || value.is_empty(), "{value:?}");
        assert_eq!(validate_digest(value).is_ok(), *good, "{value:?}");
    }
}

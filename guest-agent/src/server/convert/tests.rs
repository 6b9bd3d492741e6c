use layerpass_protocols::json::parse_mount_request;

use super::*;

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn plan() -> MountPlan {
    MountPlan {
        container_id: "c1".into(),
        layers: vec![
            LayerSpec {
                digest: DIGEST_A.into(),
                disk: DiskRef::Serial("layer-a".into()),
                fs_type: FsType::Erofs,
                verity: Some(VerityParams {
                    algorithm: HashAlgorithm::Sha512,
                    format: 1,
                    data_block_size: 4096,
                    hash_block_size: 4096,
                    data_blocks: 10,
                    hash_start_block: 11,
                    salt: vec![0; 32],
                    root_hash: vec![7; 64],
                    on_corruption: CorruptionMode::Restart,
                }),
            },
            LayerSpec {
                digest: DIGEST_B.into(),
                disk: DiskRef::Partition {
                    serial: "image".into(),
                    name: "lp-b".into(),
                },
                fs_type: FsType::Erofs,
                verity: None,
            },
        ],
        upper: UpperSpec::Disk {
            disk: DiskRef::Serial("scratch".into()),
            fs_type: "ext4".into(),
        },
        mount_point: Some("/run/c1/rootfs".into()),
        overlay: OverlayOptions {
            volatile: true,
            userxattr: false,
        },
    }
}

#[test]
fn plans_round_trip_through_the_request() {
    let plan = plan();
    assert_eq!(mount_plan(&mount_request(&plan)).unwrap(), plan);
    let tmpfs = MountPlan {
        upper: UpperSpec::Tmpfs {
            size_bytes: 1 << 30,
        },
        mount_point: None,
        ..plan
    };
    let req = mount_request(&tmpfs);
    assert!(req.mount_point.is_empty());
    assert_eq!(mount_plan(&req).unwrap(), tmpfs);
    for disk in [
        DiskRef::Serial("scratch".into()),
        DiskRef::Partition {
            serial: "image".into(),
            name: "lp-scratch".into(),
        },
    ] {
        let encrypted = MountPlan {
            upper: UpperSpec::EncryptedDisk { disk },
            ..tmpfs.clone()
        };
        let req = mount_request(&encrypted);
        assert!(req.upper.has_encrypted_disk());
        assert_eq!(mount_plan(&req).unwrap(), encrypted);
    }
}

#[test]
fn json_plan_with_an_encrypted_disk_upper() {
    let json = format!(
        r#"{{"containerId": "c3", "layers": [{{"digest": "{DIGEST_A}", "disk": {{"serial": "l"}},
            "fsType": "FS_TYPE_EROFS"}}],
            "upper": {{"encryptedDisk": {{"disk": {{"serial": "S"}}}}}}}}"#
    );
    let plan = mount_plan(&parse_mount_request(&json).unwrap()).unwrap();
    assert_eq!(
        plan.upper,
        UpperSpec::EncryptedDisk {
            disk: DiskRef::Serial("S".into())
        }
    );
    plan.validate().unwrap();
    let printed = layerpass_protocols::json::print_plan(&mount_request(&plan)).unwrap();
    assert!(
        printed.contains(r#""encryptedDisk": {"disk": {"serial": "S"}}"#),
        "{printed}"
    );
    assert_eq!(
        mount_plan(&parse_mount_request(&printed).unwrap()).unwrap(),
        plan
    );
}

fn err_text(req: &pb::MountRequest) -> String {
    let err = mount_plan(req).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument, "{err}");
    err.to_string()
}

#[test]
fn missing_oneofs_name_the_field_and_the_layer() {
    let mut req = mount_request(&plan());
    req.layers[1].disk = MessageField::none();
    let text = err_text(&req);
    assert!(text.contains("layers[1].disk: missing"), "{text}");
    assert!(text.contains(DIGEST_B), "{text}");
    assert!(text.contains("container c1"), "{text}");

    let mut req = mount_request(&plan());
    req.layers[0].disk.as_mut().unwrap().kind = None;
    assert!(err_text(&req).contains("layers[0].disk: no serial or partition"));

    let mut req = mount_request(&plan());
    req.upper = MessageField::none();
    assert!(err_text(&req).contains("upper: missing"));

    let mut req = mount_request(&plan());
    req.upper.as_mut().unwrap().kind = None;
    assert!(err_text(&req).contains("upper: no disk, encrypted_disk or tmpfs"));

    let mut req = mount_request(&plan());
    req.upper.as_mut().unwrap().mut_disk().disk = MessageField::none();
    assert!(err_text(&req).contains("upper.disk.disk: missing"));

    let mut req = mount_request(&plan());
    req.upper
        .as_mut()
        .unwrap()
        .set_encrypted_disk(pb::EncryptedDiskUpper::new());
    assert!(err_text(&req).contains("upper.encrypted_disk.disk: missing"));

    let mut req = mount_request(&plan());
    let mut e = pb::EncryptedDiskUpper::new();
    e.disk = MessageField::some(pb::DiskRef::new());
    req.upper.as_mut().unwrap().set_encrypted_disk(e);
    assert!(err_text(&req).contains("upper.encrypted_disk.disk: no serial or partition"));
}

#[test]
fn unspecified_and_unknown_enums_name_the_field() {
    let mut req = mount_request(&plan());
    req.layers[1].fs_type = EnumOrUnknown::new(pb::FsType::FS_TYPE_UNSPECIFIED);
    assert!(err_text(&req).contains("layers[1].fs_type: unspecified"));

    let mut req = mount_request(&plan());
    req.layers[0].fs_type = EnumOrUnknown::from_i32(9);
    assert!(err_text(&req).contains("layers[0].fs_type: unknown enum value 9"));

    let mut req = mount_request(&plan());
    req.layers[0].verity.as_mut().unwrap().algorithm =
        EnumOrUnknown::new(pb::HashAlgorithm::HASH_ALGORITHM_UNSPECIFIED);
    assert!(err_text(&req).contains("layers[0].verity.algorithm: unspecified"));

    let mut req = mount_request(&plan());
    req.layers[0].verity.as_mut().unwrap().on_corruption = EnumOrUnknown::from_i32(42);
    assert!(err_text(&req).contains("layers[0].verity.on_corruption: unknown enum value 42"));
}

#[test]
fn unspecified_corruption_mode_is_eio() {
    let mut req = mount_request(&plan());
    req.layers[0].verity.as_mut().unwrap().on_corruption =
        EnumOrUnknown::new(pb::CorruptionMode::CORRUPTION_MODE_UNSPECIFIED);
    let plan = mount_plan(&req).unwrap();
    let verity = plan.layers[0].verity.as_ref().unwrap();
    assert_eq!(verity.on_corruption, CorruptionMode::Eio);
}

#[test]
fn json_plan_without_a_layer_disk_is_a_clear_error() {
    let json = format!(
        r#"{{"containerId": "c2", "layers": [{{"digest": "{DIGEST_A}", "fsType": "FS_TYPE_EROFS"}}],
            "upper": {{"tmpfs": {{"sizeBytes": "1048576"}}}}}}"#
    );
    let req = parse_mount_request(&json).unwrap();
    let text = err_text(&req);
    assert_eq!(
        text,
        format!(
            "container c2: layer 0 ({DIGEST_A}): validate plan: layers[0].disk: missing \
             (needs a serial or a partition)"
        )
    );
}

#[test]
fn responses_carry_rootfs_and_layers() {
    let result = MountResult {
        container_id: "c1".into(),
        rootfs: "/run/layerpass/containers/c1/rootfs".into(),
        layers: vec![MountedLayer {
            digest: DIGEST_A.into(),
            root_hash: "ab".repeat(32),
            device: "/dev/mapper/lp-ab".into(),
            shared: true,
        }],
    };
    let resp = mount_response(&result);
    assert_eq!(resp.rootfs, "/run/layerpass/containers/c1/rootfs");
    assert_eq!(resp.layers[0].device, "/dev/mapper/lp-ab");
    assert!(resp.layers[0].shared);
    let list = list_response(&[ContainerStatus {
        container_id: "c1".into(),
        rootfs: result.rootfs.clone(),
        layers: result.layers.clone(),
    }]);
    assert_eq!(list.containers[0].layers[0].root_hash, "ab".repeat(32));
    let status = status_response(&AgentStatus {
        containers: 1,
        layers: 3,
        confidential: true,
        require_verity: true,
        measure: crate::measure::MeasureStatus {
            backend: "tpm".into(),
            register: Some(14),
            measured: 6,
            problem: Some("PCR 14: TPM_RC_RETRY".into()),
        },
    });
    assert_eq!((status.containers, status.layers), (1, 3));
    assert!(status.confidential && status.require_verity);
    assert_eq!(status.measure, "tpm");
    assert_eq!(status.measure_register, Some(14));
    assert_eq!(status.measured_events, 6);
    assert_eq!(status.measure_problem, "PCR 14: TPM_RC_RETRY");
    let log = status_response(&AgentStatus {
        containers: 0,
        layers: 0,
        confidential: false,
        require_verity: false,
        measure: crate::measure::MeasureStatus::log_only(),
    });
    assert_eq!(
        (
            log.measure.as_str(),
            log.measure_register,
            log.measure_problem.as_str()
        ),
        ("log", None, "")
    );
}

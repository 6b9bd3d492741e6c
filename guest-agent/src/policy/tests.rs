use super::*;
use crate::plan::{DiskRef, FsType, LayerSpec, OverlayOptions, UpperSpec};

fn hash(n: u8) -> String {
    hex::encode([n; 32])
}

fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

fn plan(verity: &[Option<u8>]) -> MountPlan {
    MountPlan {
        container_id: "c1".into(),
        layers: verity
            .iter()
            .enumerate()
            .map(|(i, v)| LayerSpec {
                digest: digest(u8::try_from(i).unwrap() + 100),
                disk: DiskRef::Serial(format!("l{i}")),
                fs_type: FsType::Erofs,
                verity: v.map(|n| crate::plan::VerityParams {
                    algorithm: crate::plan::HashAlgorithm::Sha256,
                    format: 1,
                    data_block_size: 4096,
                    hash_block_size: 4096,
                    data_blocks: 1,
                    hash_start_block: 1,
                    salt: vec![],
                    root_hash: vec![n; 32],
                    on_corruption: crate::plan::CorruptionMode::Eio,
                }),
            })
            .collect(),
        upper: UpperSpec::Tmpfs { size_bytes: 1 },
        mount_point: None,
        overlay: OverlayOptions::default(),
    }
}

#[test]
fn no_policy_allows_everything() {
    Policy::default().check(&plan(&[None, Some(1)])).unwrap();
}

#[test]
fn require_verity_refuses_a_layer_without_it_and_names_it() {
    let p = Policy {
        require_verity: true,
        reference_values: None,
    };
    p.check(&plan(&[Some(1), Some(2)])).unwrap();
    let e = p.check(&plan(&[Some(1), None])).unwrap_err();
    assert_eq!(e.kind(), Kind::PermissionDenied);
    assert!(
        e.to_string()
            .starts_with(&format!("container c1: layer 1 ({}): policy:", digest(101))),
        "{e}"
    );
}

#[test]
fn reference_values_refuse_unlisted_root_hashes() {
    let refs = ReferenceValues::parse(&format!("root_hashes = [\"{}\"]\n", hash(1).to_uppercase()))
        .unwrap();
    let p = Policy {
        require_verity: false,
        reference_values: Some(refs),
    };
    p.check(&plan(&[Some(1), Some(1)])).unwrap();
    let e = p.check(&plan(&[Some(1), Some(2)])).unwrap_err();
    assert_eq!(e.kind(), Kind::PermissionDenied);
    assert!(
        e.to_string().contains(&format!(
            "root hash {} is not in the reference values",
            hash(2)
        )),
        "{e}"
    );
    // Reference values imply verity.
    let e = p.check(&plan(&[None])).unwrap_err();
    assert_eq!(e.kind(), Kind::PermissionDenied);
}

#[test]
fn a_listed_digest_must_match() {
    let text = format!(
        "[[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n[[layers]]\nroot_hash = \"{}\"\n",
        hash(1),
        digest(100),
        hash(2)
    );
    let refs = ReferenceValues::parse(&text).unwrap();
    assert_eq!(refs.len(), 2);
    let p = Policy {
        require_verity: true,
        reference_values: Some(refs),
    };
    // Layer 0 has digest 100 and root 1: listed together.
    p.check(&plan(&[Some(1), Some(2)])).unwrap();
    // Layer 1 (digest 101) with root 1: root listed for digest 100 only.
    let e = p.check(&plan(&[Some(2), Some(1)])).unwrap_err();
    assert!(
        e.to_string().contains("layer 1") && e.to_string().contains("listed for"),
        "{e}"
    );
}

#[test]
fn bad_reference_files_are_refused() {
    for bad in [
        "",
        "root_hashes = [\"xyz\"]",
        "other = 1",
        "[[layers]]\nroot_hash = \"00\"",
        "root_hashes = [",
    ] {
        let e = ReferenceValues::parse(bad).unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument, "{bad:?}");
    }
    let e = ReferenceValues::load(Path::new("/nonexistent/refs.toml")).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("/nonexistent/refs.toml"));
}

#[test]
fn confidential_mode_refuses_a_scratch_disk_upper_and_keeps_tmpfs() {
    let refs = ReferenceValues::parse(&format!("root_hashes = [\"{}\"]", hash(1))).unwrap();
    let confidential = Policy {
        require_verity: true,
        reference_values: Some(refs.clone()),
    };
    let mut p = plan(&[Some(1)]);
    confidential.check(&p).unwrap();
    p.upper = UpperSpec::Disk {
        disk: DiskRef::Serial("scratch".into()),
        fs_type: "ext4".into(),
    };
    let e = confidential.check(&p).unwrap_err();
    assert_eq!(e.kind(), Kind::PermissionDenied);
    assert!(
        e.to_string()
            .starts_with("container c1: policy: upper: a scratch-disk upper"),
        "{e}"
    );
    assert!(e.to_string().contains("encrypted-disk"), "{e}");
    // Outside confidential mode the scratch disk stays allowed.
    for policy in not_confidential(refs) {
        policy.check(&p).unwrap();
    }
}

#[test]
fn confidential_mode_accepts_an_encrypted_disk_upper() {
    let refs = ReferenceValues::parse(&format!("root_hashes = [\"{}\"]", hash(1))).unwrap();
    let confidential = Policy {
        require_verity: true,
        reference_values: Some(refs.clone()),
    };
    assert!(confidential.confidential());
    let uppers = [
        (
            UpperSpec::Disk {
                disk: DiskRef::Serial("scratch".into()),
                fs_type: "ext4".into(),
            },
            false,
        ),
        (
            UpperSpec::EncryptedDisk {
                disk: DiskRef::Serial("scratch".into()),
            },
            true,
        ),
        (
            UpperSpec::Tmpfs {
                size_bytes: 1 << 20,
            },
            true,
        ),
    ];
    let others = not_confidential(refs);
    for (upper, confidential_ok) in uppers {
        let mut p = plan(&[Some(1)]);
        p.upper = upper;
        assert_eq!(
            confidential.check(&p).is_ok(),
            confidential_ok,
            "{:?}",
            p.upper
        );
        // Outside confidential mode every upper is allowed.
        for policy in &others {
            assert!(!policy.confidential());
            policy.check(&p).unwrap();
        }
    }
}

/// The policies that are not confidential mode: verity optional or required, reference
/// values without required verity.
fn not_confidential(refs: ReferenceValues) -> [Policy; 3] {
    [
        Policy::default(),
        Policy {
            require_verity: true,
            reference_values: None,
        },
        Policy {
            require_verity: false,
            reference_values: Some(refs),
        },
    ]
}

use super::*;
use crate::kernel::fake::erofs_head;

fn sb(blkszbits: u8, incompat: u32, extra: u16) -> Superblock {
    let head = erofs_head(blkszbits, incompat, extra);
    Superblock::parse(&head[SUPERBLOCK_OFFSET as usize..]).unwrap()
}

fn v(s: &str) -> KernelVersion {
    KernelVersion::parse(s).unwrap()
}

/// An index layer of ours: 512-byte blocks, chunked files, no device table.
fn ours() -> Superblock {
    sb(9, 0x4, 0)
}

/// containerd's tar index: 512-byte blocks, chunked files, a device table with one blob.
fn containerd() -> Superblock {
    sb(9, 0x4 | INCOMPAT_DEVICE_TABLE, 1)
}

/// A full conversion: 4096-byte blocks.
fn full() -> Superblock {
    sb(12, 0, 0)
}

#[test]
fn parses_the_fields_the_check_needs() {
    let s = containerd();
    assert_eq!(s.blkszbits, 9);
    assert_eq!(s.block_size(), 512);
    assert_eq!(s.extra_devices, 1);
    assert_eq!(s.devt_slotoff, 9);
    assert_eq!(s.feature_incompat, 0xc);
    assert_eq!(full().block_size(), 4096);
}

#[test]
fn extra_devices_count_only_with_the_device_table_bit() {
    // The same field without DEVICE_TABLE (a compressed image's COMPR_HEAD2 shares the
    // bit; without it the kernel ignores the field).
    assert_eq!(sb(12, 0, 3).extra_devices, 0);
    assert_eq!(requirements(&sb(12, 0, 3)), []);
    assert_eq!(sb(12, INCOMPAT_DEVICE_TABLE, 3).extra_devices, 3);
}

#[test]
fn malformed_superblocks_are_refused_without_panicking() {
    let good = erofs_head(9, 0, 0);
    let good = &good[SUPERBLOCK_OFFSET as usize..];
    for len in [0, 1, 12, 13, 80, 87, SUPERBLOCK_LEN - 1] {
        assert_eq!(
            Superblock::parse(&good[..len]),
            Err(SuperblockError::Short { len })
        );
    }
    let mut bad = good.to_vec();
    bad[0] ^= 1;
    assert_eq!(
        Superblock::parse(&bad),
        Err(SuperblockError::Magic { found: 0xE0F5_E1E3 })
    );
    assert!(
        Superblock::parse(&[0; SUPERBLOCK_LEN])
            .unwrap_err()
            .to_string()
            .contains("is not EROFS's 0xe0f5e1e2")
    );
    for bits in [0, 8, 13, 16, 255] {
        let mut b = good.to_vec();
        b[12] = bits;
        assert_eq!(
            Superblock::parse(&b),
            Err(SuperblockError::BlockSize { blkszbits: bits })
        );
    }
    // Every field at its extreme still parses (and a longer read is fine).
    let mut b = good.to_vec();
    b[80..90].fill(0xff);
    b.extend_from_slice(&[0xff; 1000]);
    let s = Superblock::parse(&b).unwrap();
    assert_eq!((s.extra_devices, s.devt_slotoff), (u16::MAX, u16::MAX));
    // Arbitrary bytes behind a valid magic never panic.
    let mut seed = 0x1234_5678_u32;
    for _ in 0..2000 {
        let mut b = good.to_vec();
        for byte in &mut b[4..] {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *byte = (seed >> 16) as u8;
        }
        let _ = Superblock::parse(&b).map(|s| requirements(&s));
    }
}

#[test]
fn kernel_releases_parse() {
    assert_eq!(v("6.1.112"), KernelVersion::new(6, 1, 112));
    assert_eq!(v("6.1.0-28-amd64"), KernelVersion::new(6, 1, 0));
    assert_eq!(v("6.12.48+deb13-amd64"), KernelVersion::new(6, 12, 48));
    assert_eq!(v("6.4"), KernelVersion::new(6, 4, 0));
    assert_eq!(v("6.3-rc1"), KernelVersion::new(6, 3, 0));
    assert_eq!(v("10.0.0"), KernelVersion::new(10, 0, 0));
    for bad in [
        "",
        "garbage",
        "6",
        "6.",
        ".1.2",
        "v6.1",
        "6-1",
        "9999999999.1.1",
    ] {
        assert_eq!(KernelVersion::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn debian_names_the_stable_patch_level_in_uname_v() {
    let r = "6.1.0-57-cloud-amd64";
    assert_eq!(
        KernelVersion::running(r, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-10-01)"),
        Some(KernelVersion::new(6, 1, 192))
    );
    assert_eq!(
        KernelVersion::running(r, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1 (2024-09-30)"),
        Some(KernelVersion::new(6, 1, 112))
    );
    // Backports: `6.12.12+bpo-cloud-amd64`, version `Debian 6.12.12-1~bpo12+1`.
    assert_eq!(
        KernelVersion::running(
            "6.12.12+bpo-cloud-amd64",
            "#1 SMP PREEMPT_DYNAMIC Debian 6.12.12-1~bpo12+1 (2025-02-23)"
        ),
        Some(KernelVersion::new(6, 12, 12))
    );
    // Another series in the version is not this kernel's.
    assert_eq!(
        KernelVersion::running(r, "#1 SMP Debian 6.12.200-1"),
        Some(KernelVersion::new(6, 1, 0))
    );
    // Without Debian's note, the release.
    assert_eq!(
        KernelVersion::running("6.1.113", "#1 SMP PREEMPT"),
        Some(KernelVersion::new(6, 1, 113))
    );
    assert_eq!(KernelVersion::running("garbage", "Debian 6.1.200"), None);
}

#[test]
fn sub_page_blocks_need_6_1_113_or_6_4() {
    let need = Requirement::SubPageBlocks { block_size: 512 };
    for (k, ok) in [
        ("5.15.170", false),
        ("6.1.0", false),
        ("6.1.112", false),
        ("6.1.113", true),
        ("6.1.192", true),
        ("6.2.16", false),
        ("6.3", false),
        ("6.3.13", false),
        ("6.4", true),
        ("6.6.60", true),
        ("6.12", true),
        ("7.0", true),
    ] {
        assert_eq!(need.met_by(v(k)), ok, "{k}");
    }
}

#[test]
fn a_flat_device_table_needs_6_4() {
    let need = Requirement::FlatDeviceTable { extra_devices: 1 };
    for (k, ok) in [
        ("6.1.112", false),
        ("6.1.113", false),
        ("6.1.192", false),
        ("6.3", false),
        ("6.3.13", false),
        ("6.4", true),
        ("6.12", true),
    ] {
        assert_eq!(need.met_by(v(k)), ok, "{k}");
    }
}

#[test]
fn what_each_layer_kind_needs_of_each_kernel() {
    // (layer, kernel, the requirement refused or None).
    let cases = [
        (full(), "6.1.0", None),
        (full(), "5.10.0", None),
        (
            ours(),
            "6.1.112",
            Some(Requirement::SubPageBlocks { block_size: 512 }),
        ),
        (ours(), "6.1.113", None),
        (ours(), "6.1.192", None),
        (
            ours(),
            "6.3",
            Some(Requirement::SubPageBlocks { block_size: 512 }),
        ),
        (ours(), "6.4", None),
        (ours(), "6.12", None),
        (
            containerd(),
            "6.1.112",
            Some(Requirement::SubPageBlocks { block_size: 512 }),
        ),
        (
            containerd(),
            "6.1.113",
            Some(Requirement::FlatDeviceTable { extra_devices: 1 }),
        ),
        (
            containerd(),
            "6.1.192",
            Some(Requirement::FlatDeviceTable { extra_devices: 1 }),
        ),
        (
            containerd(),
            "6.3",
            Some(Requirement::SubPageBlocks { block_size: 512 }),
        ),
        (containerd(), "6.4", None),
        (containerd(), "6.12", None),
        // A 4096-byte image with a device table: only flatdev.
        (
            sb(12, INCOMPAT_DEVICE_TABLE, 2),
            "6.1.192",
            Some(Requirement::FlatDeviceTable { extra_devices: 2 }),
        ),
    ];
    for (layer, kernel, refused) in cases {
        let got = check(&layer, kernel, v(kernel))
            .err()
            .map(|e| e.requirement);
        assert_eq!(got, refused, "{layer:?} on {kernel}");
    }
}

#[test]
fn the_error_names_the_release_version_and_requirement() {
    let e = check(
        &containerd(),
        "6.1.0-57-cloud-amd64",
        KernelVersion::new(6, 1, 192),
    )
    .unwrap_err();
    let msg = e.to_string();
    for want in [
        "6.1.0-57-cloud-amd64 (6.1.192)",
        "1 extra device(s)",
        "needs Linux 6.4 or later (flatdev)",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    let e = check(&ours(), "6.1.112", v("6.1.112")).unwrap_err();
    assert!(
        e.to_string()
            .contains("512-byte EROFS blocks (smaller than the page) need Linux 6.1.113"),
        "{e}"
    );
}

//! Test vectors from `verity-erofs.md` §2 (all checked with veritysetup 2.6.1), layouts,
//! corruption detection at every level, and bad input.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::*;

const S: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const Z: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn separate(salt: &str, hash_type: HashType) -> FormatOptions {
    FormatOptions {
        params: VerityParams {
            hash_type,
            salt: Salt::from_str(salt).unwrap(),
            ..VerityParams::containerd()
        },
        superblock: false,
        uuid: None,
        hash_offset: None,
        data_blocks: None,
        target: HashTarget::File(PathBuf::new()),
        pad: false,
        sidecar: false,
    }
}

/// Formats `data` into a separate hash file without superblock; returns (root, tree bytes).
fn tree_of(data: &[u8], salt: &str, hash_type: HashType) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let d = write(dir.path(), "d", data);
    let h = dir.path().join("t.h");
    let mut opts = separate(salt, hash_type);
    opts.target = HashTarget::File(h.clone());
    let report = format_file(&d, &opts, None).unwrap();
    (report.root_hash, fs::read(h).unwrap())
}

#[track_caller]
fn check_vector(data: &[u8], salt: &str, hash_type: HashType, root: &str, size: usize, sha: &str) {
    let (got_root, tree) = tree_of(data, salt, hash_type);
    assert_eq!(got_root, root);
    assert_eq!(tree.len(), size);
    assert_eq!(hex::encode(Sha256::digest(&tree)), sha);
}

#[test]
fn tv1_zeros_1mib_salt_s() {
    check_vector(
        &vec![0; 1 << 20],
        S,
        HashType::V1,
        "7722fefaac5735743fbbc956822bd9be4d8475282267a65a652b459ffa7b9606",
        12288,
        "eea6ddaee0675a8b542836a2e9b4b15082d2aae548f803521646efa4d752f296",
    );
}

#[test]
fn tv2_zeros_1mib_no_salt() {
    check_vector(
        &vec![0; 1 << 20],
        "-",
        HashType::V1,
        "5d98121f8aeff2a38a3fffee013f85980078507a0ffbd99e5a8d616ecfe7db6a",
        12288,
        "cff350a2cad10161a2bd3a2976c0a84fcdebe5c2eba6894f15cd9b115e20dbdf",
    );
}

#[test]
fn tv3_one_block_has_no_tree() {
    let (root, tree) = tree_of(&[0; 4096], S, HashType::V1);
    assert_eq!(
        root,
        "4ce3ecf32c133bf6321901b6092219474b6ac91a19d0304621d629e6bb9987dc"
    );
    assert!(tree.is_empty());
}

#[test]
fn tv4_three_levels() {
    check_vector(
        &vec![0; 4096 * 16385],
        S,
        HashType::V1,
        "a4560fc95e80c4d31644794c9dfe6e2cf072bb0e4c9df65a03ea775b9dd8c935",
        540_672,
        "568801db86fb6e4f8f5125c90203c32d88064880e93ad2107447de63ec8b6192",
    );
}

#[test]
fn tv5_tv6_tv7_letters() {
    let data = vec![b'a'; 4096 * 257];
    check_vector(
        &data,
        S,
        HashType::V1,
        "b4ee64278893f95bd99dc9b2761d41cbb03cc6af2188382c7c86a040c88a3c41",
        16384,
        "b11fad728447fe8df5ae6897cd4b37c50011a0dba9de9fcb434d922396789123",
    );
    check_vector(
        &data,
        S,
        HashType::V0,
        "ba1147b2e9c11c3068b5238186d8c950f2330fc0dcb391db193b231615a5f170",
        16384,
        "39c81c9fc9254a07eec43362586a1113529ac2a2980c2b5021a5ec75c1036ec4",
    );
    check_vector(
        &data,
        Z,
        HashType::V1,
        "e8f91a81897ec51d849a339393cf7063ca370795f77a6ffbd8b1691e87c2ff43",
        16384,
        "40777deb20af1e952f167805b805a1efdb95b6aa4f832056c219c06cbfe90b27",
    );
}

#[test]
fn tv8_zeros_1mib_zero_salt() {
    check_vector(
        &vec![0; 1 << 20],
        Z,
        HashType::V1,
        "bef46122f85025cf37061b16c04e2a19960a5bbcdbb656b5e91ae7927c0ad807",
        12288,
        "f3e97410bc657a9e8a60858fe05a1c9bd7c8f9aa2789837b0b2e223776be3a79",
    );
}

#[test]
fn superblock_precedes_the_tree_in_a_hash_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = write(dir.path(), "d", &vec![0; 1 << 20]);
    let h = dir.path().join("t.h");
    let mut opts = separate(S, HashType::V1);
    opts.superblock = true;
    opts.uuid = Some(Uuid::from_u128(7));
    opts.target = HashTarget::File(h.clone());
    let r = format_file(&d, &opts, None).unwrap();
    assert_eq!(
        r.root_hash,
        "7722fefaac5735743fbbc956822bd9be4d8475282267a65a652b459ffa7b9606"
    );
    assert_eq!(r.hash_start_block, 1);
    let bytes = fs::read(&h).unwrap();
    assert_eq!(bytes.len(), 4096 + 12288);
    let sb: [u8; SUPERBLOCK_SIZE] = bytes[..SUPERBLOCK_SIZE].try_into().unwrap();
    let parsed = Superblock::parse(&sb, &h, 0).unwrap();
    assert_eq!((parsed.data_blocks, parsed.uuid), (256, Uuid::from_u128(7)));
    assert!(bytes[SUPERBLOCK_SIZE..4096].iter().all(|&b| b == 0));
    assert_eq!(
        hex::encode(Sha256::digest(&bytes[4096..])),
        "eea6ddaee0675a8b542836a2e9b4b15082d2aae548f803521646efa4d752f296"
    );
}

#[test]
fn containerd_layout_appends_superblock_tree_and_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![b'a'; 4096 * 257];
    let d = write(dir.path(), "layer.erofs", &data);
    let r = format_file(&d, &FormatOptions::containerd(), None).unwrap();
    assert_eq!(
        r.root_hash,
        "e8f91a81897ec51d849a339393cf7063ca370795f77a6ffbd8b1691e87c2ff43"
    );
    assert_eq!((r.hash_offset, r.hash_start_block), (4096 * 257, 258));
    let bytes = fs::read(&d).unwrap();
    assert_eq!(bytes.len(), 4096 * 257 + 4096 + 16384);
    assert_eq!(&bytes[..data.len()], &data[..]);
    assert_eq!(&bytes[data.len()..data.len() + 8], b"verity\0\0");
    let side = Sidecar::read(&sidecar_path(&d)).unwrap();
    assert_eq!(
        side,
        Sidecar {
            roothash: r.root_hash.clone(),
            hashoffset: 4096 * 257
        }
    );
    assert_eq!(
        r.table("/dev/vda", "/dev/vda"),
        format!(
            "0 2056 verity 1 /dev/vda /dev/vda 4096 4096 257 258 sha256 {} {Z}",
            r.root_hash
        )
    );
    // Verify finds the tree through the sidecar and the superblock.
    let opts = VerifyOptions {
        params: VerityParams::containerd(),
        superblock: true,
        hash_file: None,
        hash_offset: None,
        data_blocks: None,
    };
    let v = verify_file(&d, &r.root_hash, &opts, None).unwrap();
    assert_eq!((v.data_blocks, v.hash_start_block), (257, 258));
}

/// Deterministic, non-repeating data so every block hashes differently.
fn pattern(blocks: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks * 4096);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < blocks * 4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[test]
fn verify_names_a_flipped_bit_in_data_and_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = 16385; // three levels: 129 + 2 + 1 hash blocks
    let d = write(dir.path(), "d", &pattern(blocks));
    let h = dir.path().join("t.h");
    let mut opts = separate(S, HashType::V1);
    opts.target = HashTarget::File(h.clone());
    let r = format_file(&d, &opts, None).unwrap();
    let vopts = VerifyOptions {
        params: opts.params.clone(),
        superblock: false,
        hash_file: Some(h.clone()),
        hash_offset: None,
        data_blocks: None,
    };
    verify_file(&d, &r.root_hash, &vopts, None).unwrap();

    let geometry = Geometry::new(&opts.params, blocks as u64).unwrap();
    // (file, byte to flip, expected bad block)
    let mut cases = vec![
        (
            d.clone(),
            0u64,
            BadBlock::Data {
                index: 0,
                offset: 0,
            },
        ),
        (
            d.clone(),
            4096 * 9000 + 17,
            BadBlock::Data {
                index: 9000,
                offset: 4096 * 9000,
            },
        ),
        (
            d.clone(),
            4096 * 16385 - 1,
            BadBlock::Data {
                index: 16384,
                offset: 4096 * 16384,
            },
        ),
    ];
    for (level, l) in geometry.levels.iter().enumerate() {
        for index in [0, l.blocks - 1] {
            let offset = (l.first_block + index) * 4096;
            cases.push((
                h.clone(),
                offset + 4095,
                BadBlock::Hash {
                    level,
                    index,
                    offset,
                },
            ));
        }
    }
    // Padding after the last slot of the last leaf block is covered too.
    let leaf = geometry.levels[0];
    let last_leaf = (leaf.first_block + leaf.blocks - 1) * 4096;
    cases.push((
        h.clone(),
        last_leaf + 4000,
        BadBlock::Hash {
            level: 0,
            index: leaf.blocks - 1,
            offset: last_leaf,
        },
    ));

    for (file, at, expected) in cases {
        let original = fs::read(&file).unwrap();
        let mut bytes = original.clone();
        bytes[at as usize] ^= 0x10;
        fs::write(&file, &bytes).unwrap();
        match verify_file(&d, &r.root_hash, &vopts, None) {
            Err(VerityError::Mismatch(bad)) => {
                assert_eq!(bad, expected, "flip at {at} of {file:?}");
            }
            other => panic!("flip at {at} of {file:?}: expected a mismatch, got {other:?}"),
        }
        fs::write(&file, &original).unwrap();
    }
    // A wrong root hash is named as the top block.
    let wrong = "00".repeat(32);
    assert!(matches!(
        verify_file(&d, &wrong, &vopts, None),
        Err(VerityError::Mismatch(BadBlock::Hash {
            level: 2,
            index: 0,
            ..
        }))
    ));
}

#[test]
fn verify_single_block_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = write(dir.path(), "d", &pattern(1));
    let h = dir.path().join("t.h");
    let mut opts = separate(S, HashType::V1);
    opts.target = HashTarget::File(h.clone());
    let r = format_file(&d, &opts, None).unwrap();
    let vopts = VerifyOptions {
        params: opts.params.clone(),
        superblock: false,
        hash_file: Some(h),
        hash_offset: None,
        data_blocks: None,
    };
    verify_file(&d, &r.root_hash, &vopts, None).unwrap();
    let mut bytes = fs::read(&d).unwrap();
    bytes[100] ^= 1;
    fs::write(&d, &bytes).unwrap();
    assert!(matches!(
        verify_file(&d, &r.root_hash, &vopts, None),
        Err(VerityError::Mismatch(BadBlock::Data {
            index: 0,
            offset: 0
        }))
    ));
}

/// Every bad input leaves the directory exactly as it was.
#[test]
fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let listing = |dir: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let empty = write(dir.path(), "empty", b"");
    let partial = write(dir.path(), "partial", &vec![1; 8292]);
    let whole = write(dir.path(), "whole", &vec![2; 8192]);
    let before = listing(dir.path());

    let c = FormatOptions::containerd;
    let err = format_file(&empty, &c(), None).unwrap_err();
    assert!(matches!(err, VerityError::EmptyData { .. }), "{err}");
    let err = format_file(&partial, &c(), None).unwrap_err();
    assert!(
        matches!(
            err,
            VerityError::PartialBlock {
                size: 8292,
                remainder: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("100 trailing bytes"), "{err}");
    let err = format_file(&dir.path().join("missing"), &c(), None).unwrap_err();
    assert!(matches!(err, VerityError::Io { op: "open", .. }), "{err}");
    let err = format_file(
        &whole,
        &FormatOptions {
            hash_offset: Some(4096),
            ..c()
        },
        None,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VerityError::HashOffsetInsideData {
            hash_offset: 4096,
            data_end: 8192
        }
    ));
    let err = format_file(
        &whole,
        &FormatOptions {
            hash_offset: Some(8200),
            ..c()
        },
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerityError::HashOffsetAlignment { alignment: 512, .. }),
        "{err}"
    );
    let mut bad_block = c();
    bad_block.params.data_block_size = 3000;
    let err = format_file(&whole, &bad_block, None).unwrap_err();
    assert!(
        matches!(
            &err,
            VerityError::Contract(layerpass_types::TypeError::Verity { value, .. }) if value == "3000"
        ),
        "{err}"
    );
    let err = format_file(
        &whole,
        &FormatOptions {
            data_blocks: Some(3),
            ..c()
        },
        None,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VerityError::NotEnoughData {
            available: 2,
            requested: 3,
            ..
        }
    ));
    let mut sep = c();
    sep.target = HashTarget::File(dir.path().join("t.h"));
    let err = format_file(&whole, &sep, None).unwrap_err();
    assert!(
        matches!(err, VerityError::BadSidecar { .. }),
        "sidecar with a hash file: {err}"
    );

    assert_eq!(listing(dir.path()), before);
}

#[test]
fn pad_extends_the_data_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let d = write(dir.path(), "d", &vec![7; 8292]);
    let r = format_file(
        &d,
        &FormatOptions {
            pad: true,
            ..FormatOptions::containerd()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        (r.data_blocks, r.padded_bytes, r.hash_offset),
        (3, 4096 - 100, 12288)
    );
    let bytes = fs::read(&d).unwrap();
    assert!(bytes[8292..12288].iter().all(|&b| b == 0));
    let mut padded = vec![7; 8292];
    padded.resize(12288, 0);
    let (root, _) = tree_of(&padded, Z, HashType::V1);
    assert_eq!(r.root_hash, root);
}

#[test]
fn hash_file_keeps_bytes_before_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = write(dir.path(), "d", &pattern(3));
    let h = write(dir.path(), "t.h", &[0xAB; 5000]);
    let mut opts = separate(S, HashType::V1);
    opts.target = HashTarget::File(h.clone());
    opts.hash_offset = Some(8192);
    let r = format_file(&d, &opts, None).unwrap();
    let bytes = fs::read(&h).unwrap();
    assert_eq!(bytes.len(), 8192 + 4096);
    assert!(bytes[..5000].iter().all(|&b| b == 0xAB));
    assert!(bytes[5000..8192].iter().all(|&b| b == 0));
    assert_eq!(r.hash_start_block, 2);
    let (root, tree) = tree_of(&pattern(3), S, HashType::V1);
    assert_eq!((r.root_hash, &bytes[8192..]), (root, &tree[..]));
}

/// Leaf digests recorded out of order while "writing" give exactly the bytes of a format
/// that reads the data, without reading it.
#[test]
fn tree_from_recorded_leaves_equals_tree_from_data() {
    for blocks in [1usize, 2, 300, 16_385] {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(blocks);
        let a = write(dir.path(), "a", &data);
        let b = write(dir.path(), "b", &data);
        let opts = FormatOptions {
            uuid: Some(Uuid::from_u128(9)),
            ..FormatOptions::containerd()
        };
        let from_data = format_file(&a, &opts, None).unwrap();

        let mut leaves = LeafDigests::new(opts.params.clone()).unwrap();
        // Chunks of 700 blocks, recorded last chunk first; the first chunk twice.
        let chunk = 700 * 4096;
        let starts: Vec<usize> = (0..data.len()).step_by(chunk).collect();
        for &s in starts.iter().rev() {
            let e = (s + chunk).min(data.len());
            leaves.record((s / 4096) as u64, &data[s..e]).unwrap();
        }
        leaves.record(0, &data[..4096]).unwrap();
        let from_leaves = format_file_from_leaves(&b, &opts, &leaves).unwrap();
        assert_eq!(
            from_leaves.root_hash, from_data.root_hash,
            "{blocks} blocks"
        );
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{blocks} blocks: files differ"
        );
    }
}

#[test]
fn unusable_leaf_records_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(10);
    let d = write(dir.path(), "d", &data);
    let opts = FormatOptions::containerd();
    let mut leaves = LeafDigests::new(opts.params.clone()).unwrap();
    leaves.record(0, &data[..4096 * 4]).unwrap();
    leaves.record(5, &data[4096 * 5..]).unwrap();
    let err = format_file_from_leaves(&d, &opts, &leaves).unwrap_err();
    assert!(
        err.to_string().contains("data block 4 was never recorded"),
        "{err}"
    );
    leaves.record(4, &data[4096 * 4..4096 * 5]).unwrap();
    let mut other = opts.clone();
    other.params.salt = Salt::none();
    let err = format_file_from_leaves(&d, &other, &leaves).unwrap_err();
    assert!(matches!(err, VerityError::Leaves(_)), "{err}");
    assert!(leaves.record(0, &data[..100]).is_err());
    assert_eq!(fs::read(&d).unwrap(), data);
    assert!(!sidecar_path(&d).exists());
    format_file_from_leaves(&d, &opts, &leaves).unwrap();
}

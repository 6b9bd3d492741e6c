//! Differential test: layerpass and the real `veritysetup format` (cryptsetup-bin) on the
//! same inputs give the same root hash and the same bytes (tree, superblock, layout).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use layerpass::verity::{
    FormatOptions, HashAlgorithm, HashTarget, HashType, Salt, VerifyOptions, VerityParams,
    format_file, verify_file,
};
use layerpass_test_support::counted;
use layerpass_tests::tools::{pseudo_random, require_tool, run, veritysetup_root};
use uuid::Uuid;

const UUID: &str = "4a0b8c4e-5c1e-4f62-9d7b-2f1f3c0e9a11";
const S: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    pseudo_random(len, seed)
}

#[derive(Debug, Clone)]
struct Case {
    blocks: u64,
    params: VerityParams,
    superblock: bool,
    appended: bool,
}

impl Case {
    fn salt_arg(&self) -> String {
        self.params.salt.to_table_hex()
    }
}

fn veritysetup(vs: &Path, case: &Case, data: &Path, hash: &Path, hash_offset: u64) -> String {
    let mut cmd = Command::new(vs);
    cmd.arg("format")
        .arg(format!("--hash={}", case.params.algorithm))
        .arg(format!("--format={}", case.params.hash_type.number()))
        .arg(format!("--data-block-size={}", case.params.data_block_size))
        .arg(format!("--hash-block-size={}", case.params.hash_block_size))
        .arg(format!("--salt={}", case.salt_arg()))
        .arg(format!("--uuid={UUID}"));
    if !case.superblock {
        cmd.arg("--no-superblock");
    }
    if case.appended {
        cmd.arg(format!("--hash-offset={hash_offset}"));
    }
    cmd.arg(data).arg(hash);
    veritysetup_root(&run(&mut cmd).unwrap().stdout).unwrap()
}

fn check(vs: &Path, case: &Case, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let dbs = u64::from(case.params.data_block_size);
    let data = pattern((case.blocks * dbs) as usize, seed);
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    fs::write(&ours, &data).unwrap();
    fs::write(&theirs, &data).unwrap();
    let (our_hash, their_hash) = if case.appended {
        (ours.clone(), theirs.clone())
    } else {
        (dir.path().join("ours.h"), dir.path().join("theirs.h"))
    };
    let hash_offset = case.blocks * dbs;
    let expected_root = veritysetup(vs, case, &theirs, &their_hash, hash_offset);

    let opts = FormatOptions {
        params: case.params.clone(),
        superblock: case.superblock,
        uuid: Some(Uuid::from_str(UUID).unwrap()),
        hash_offset: None,
        data_blocks: None,
        target: if case.appended {
            HashTarget::Append
        } else {
            HashTarget::File(our_hash.clone())
        },
        pad: false,
        sidecar: false,
    };
    let report = format_file(&ours, &opts, None).unwrap();
    assert_eq!(
        report.root_hash, expected_root,
        "root hash differs for {case:?}"
    );
    let (a, b) = (fs::read(&our_hash).unwrap(), fs::read(&their_hash).unwrap());
    assert_eq!(a.len(), b.len(), "hash area length differs for {case:?}");
    assert!(a == b, "hash area bytes differ for {case:?}");
    if case.appended {
        assert_eq!(report.hash_offset, hash_offset);
    }

    // veritysetup verify accepts our tree, and we accept theirs.
    let mut cmd = Command::new(vs);
    cmd.arg("verify");
    if !case.superblock {
        cmd.arg("--no-superblock")
            .arg(format!("--hash={}", case.params.algorithm))
            .arg(format!("--format={}", case.params.hash_type.number()))
            .arg(format!("--data-block-size={}", case.params.data_block_size))
            .arg(format!("--hash-block-size={}", case.params.hash_block_size))
            .arg(format!("--salt={}", case.salt_arg()));
        if case.appended {
            cmd.arg(format!("--data-blocks={}", case.blocks));
        }
    }
    if case.appended {
        cmd.arg(format!("--hash-offset={hash_offset}"));
    }
    run(cmd.arg(&ours).arg(&our_hash).arg(&report.root_hash)).unwrap();
    let vopts = VerifyOptions {
        params: case.params.clone(),
        superblock: case.superblock,
        hash_file: (!case.appended).then(|| their_hash.clone()),
        hash_offset: case.appended.then_some(hash_offset),
        data_blocks: case.appended.then_some(case.blocks),
    };
    verify_file(&theirs, &expected_root, &vopts, None).unwrap();
}

fn params(
    algorithm: HashAlgorithm,
    hash_type: HashType,
    dbs: u32,
    hbs: u32,
    salt: &str,
) -> VerityParams {
    VerityParams {
        algorithm,
        hash_type,
        data_block_size: dbs,
        hash_block_size: hbs,
        salt: Salt::from_str(salt).unwrap(),
    }
}

/// sha256, 4096/4096: sizes 1, 2, 127, 128, 129, 16385 and a few odd ones; both formats;
/// salt S, none and 32 zero bytes; with and without superblock; separate and appended.
#[test]
fn sha256_4k_matrix_matches_veritysetup() {
    let Some(vs) = require_tool("veritysetup", "cryptsetup-bin") else {
        return;
    };
    let zero = "00".repeat(32);
    let mut n = 0;
    for (i, blocks) in [1u64, 2, 127, 128, 129, 16385, 3, 1000, 5021]
        .into_iter()
        .enumerate()
    {
        for hash_type in [HashType::V1, HashType::V0] {
            for salt in [S, "-", zero.as_str()] {
                for superblock in [true, false] {
                    for appended in [false, true] {
                        // The 64 MiB case runs once per format and placement, not per salt.
                        if blocks == 16385 && salt != S {
                            continue;
                        }
                        let case = Case {
                            blocks,
                            params: params(HashAlgorithm::Sha256, hash_type, 4096, 4096, salt),
                            superblock,
                            appended,
                        };
                        check(&vs, &case, i as u64 + 1);
                        n += 1;
                    }
                }
            }
        }
    }
    counted::compared(
        n,
        8 * 2 * 3 * 4 + 2 * 4,
        "sha256/4096 trees byte-identical to veritysetup (and verified both ways)",
    );
}

/// The cases of the matrix below: 3 algorithms × 2 formats × 6 geometries × 4 sizes × 3
/// layouts = 432, less 36 with 64 KiB blocks and more than 9 of them, less 18 superblocks
/// veritysetup cannot append to a file under 4096 bytes.
const MIN_OTHER_CASES: usize = 378;

/// Other algorithms, block sizes and salt lengths.
#[test]
fn other_algorithms_and_block_sizes_match_veritysetup() {
    let Some(vs) = require_tool("veritysetup", "cryptsetup-bin") else {
        return;
    };
    let long_salt = "5a".repeat(256);
    let mut n = 0;
    let geometries = [
        (4096, 4096),
        (512, 4096),
        (4096, 1024),
        (1024, 512),
        (512, 512),
        (65536, 65536),
    ];
    for algorithm in [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha512,
        HashAlgorithm::Sha256,
    ] {
        for hash_type in [HashType::V1, HashType::V0] {
            for (dbs, hbs) in geometries {
                for blocks in [1u64, 9, 129, 257] {
                    for (superblock, appended, salt) in [
                        (true, true, S),
                        (false, false, long_salt.as_str()),
                        (true, false, "-"),
                    ] {
                        if dbs == 65536 && blocks > 9 {
                            continue;
                        }
                        // veritysetup cannot write a superblock into a file smaller than
                        // 4096 bytes ("Error during update of verity header"): no peer.
                        if appended && superblock && blocks * u64::from(dbs) < 4096 {
                            continue;
                        }
                        let case = Case {
                            blocks,
                            params: params(algorithm, hash_type, dbs, hbs, salt),
                            superblock,
                            appended,
                        };
                        check(&vs, &case, blocks ^ u64::from(dbs));
                        n += 1;
                    }
                }
            }
        }
    }
    counted::compared(
        n,
        MIN_OTHER_CASES,
        "trees of other algorithms and block sizes byte-identical to veritysetup",
    );
}

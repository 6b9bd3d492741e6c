//! Damaged layers: every truncation point and a few hundred single-byte corruptions of a
//! generated tar (plain and gzip). Each conversion either succeeds with an image
//! `fsck.erofs` accepts, or fails with an error; it never panics and never leaves a file
//! behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::path::Path;

use common::{corpus, tars, tools};
use layerpass::erofs::{ConvertOptions, convert_layer};

fn convert_checked(input: &[u8], dir: &Path, fsck: bool) -> bool {
    let out = dir.join("out.erofs");
    let ok = match convert_layer(input, &out, &ConvertOptions::default()) {
        Ok(_) => {
            if fsck {
                tools::fsck(&out);
            }
            std::fs::remove_file(&out).unwrap();
            std::fs::remove_file(dir.join("out.erofs.dmverity")).unwrap();
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    };
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    ok
}

#[test]
fn every_truncation_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let tar = corpus::normalisation();
    let mut failures = 0;
    for cut in (0..tar.len()).step_by(256) {
        if !convert_checked(&tar[..cut], dir.path(), cut % 4096 == 0) {
            failures += 1;
        }
    }
    assert!(failures > 0, "truncations inside entries must fail");
    let gz = tars::gzip(&tar);
    for cut in (0..gz.len()).step_by(97) {
        convert_checked(&gz[..cut], dir.path(), false);
    }
}

#[test]
fn single_byte_corruptions_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let tar = corpus::basic();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bad = tar.clone();
        let at = (x % bad.len() as u64) as usize;
        bad[at] ^= 1 << (x >> 61);
        convert_checked(&bad, dir.path(), i % 10 == 0);
    }
}

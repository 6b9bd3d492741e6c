//! A file larger than 4 GiB (extended inode, 64-bit size), its size given only in a PAX
//! `size` record as Go's archive/tar writes it, streamed through the converter and read
//! back through a kernel mount.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::io::Read;

use common::streamgen::{GenTar, Member};
use common::{mount::Mount, tools};
use layerpass::erofs::{ConvertOptions, convert_layer};
use sha2::{Digest, Sha256};

#[test]
fn file_over_4_gib_round_trips() {
    if !tools::can_mount() {
        return;
    }
    let big = (4u64 << 30) + 12_345;
    let members = vec![
        Member {
            name: "data/big".into(),
            len: big,
            seed: 1,
            pax_size: true,
        },
        Member {
            name: "data/after".into(),
            len: 5000,
            seed: 2,
            pax_size: false,
        },
    ];
    let gen_tar = GenTar::new(members);
    let digests = gen_tar.digests.clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.erofs");
    let report = convert_layer(gen_tar, &out, &ConvertOptions::default()).unwrap();
    assert!(report.erofs_size > big);
    tools::fsck(&out);
    let m = Mount::erofs(&out);
    let digests = digests.lock().unwrap().clone();
    for (name, len, want) in [
        ("data/big", big, &digests[0]),
        ("data/after", 5000, &digests[1]),
    ] {
        let p = m.path().join(name);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), len, "{name}");
        let mut f = std::fs::File::open(&p).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        assert_eq!(&hex::encode(h.finalize()), want, "{name} content");
    }
}

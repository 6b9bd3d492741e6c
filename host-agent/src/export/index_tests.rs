//! Index layers and 512-byte verity as disks: the `META+TAR` grammar, the bytes a layer disk
//! serves, the logical block size it advertises, and a composite disk's 512-byte GPT.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

use vm_memory::VolatileSlice;

use super::Disk;
use super::composite::{ALIGN, CompositeDisk};
use super::index::IndexTar;
use super::index_fixture::{appended_blob, index_layer};
use super::layer::LayerDisk;
use super::spec::LayerFileSpec;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn read_all(disk: &dyn Disk) -> Vec<u8> {
    let mut buf = vec![0xA5u8; disk.size() as usize];
    disk.read_at(0, &[VolatileSlice::from(buf.as_mut_slice())])
        .unwrap();
    buf
}

fn padded(mut b: Vec<u8>) -> Vec<u8> {
    b.resize(b.len().div_ceil(4096) * 4096, 0);
    b
}

#[test]
fn index_grammar() {
    let s = LayerFileSpec::parse(&format!("/x/m+/y/a.tar#1536:/z/t@sha256:{HEX}=ser")).unwrap();
    assert_eq!(s.blob, Path::new("/x/m"));
    assert_eq!(
        s.index,
        Some(IndexTar {
            path: "/y/a.tar".into(),
            offset: 1536
        })
    );
    assert_eq!(s.tree.as_deref(), Some(Path::new("/z/t")));
    assert_eq!(s.serial.as_deref(), Some("ser"));
    assert!(s.digest.is_some());
    // TREE defaults to META.tree, OFFSET to 0
    let s = LayerFileSpec::parse("/x/m+/y/a.tar").unwrap();
    assert_eq!(s.tree.as_deref(), Some(Path::new("/x/m.tree")));
    assert_eq!(s.index.as_ref().map(|t| t.offset), Some(0));
    // an offset that is not a number stays part of the tar's name
    let s = LayerFileSpec::parse("/x/m+/y/a#b").unwrap();
    assert_eq!(s.index.unwrap().path, Path::new("/y/a#b"));
    let s = LayerFileSpec::parse("/x/m+/y/a#").unwrap();
    assert_eq!(s.index.unwrap().path, Path::new("/y/a#"));
    // a lone or leading + is a plain file name
    for plain in ["/x/m+", "+/y"] {
        let s = LayerFileSpec::parse(plain).unwrap();
        assert_eq!((s.blob.as_path(), s.index), (Path::new(plain), None));
    }
    let s = LayerFileSpec::parse("/x/plain.erofs").unwrap();
    assert_eq!((s.index, s.tree), (None, None));
}

#[test]
fn index_grammar_prefers_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    // a file named with + and # is taken whole
    let odd = dir.path().join("a+b#12");
    std::fs::write(&odd, b"x").unwrap();
    let s = LayerFileSpec::parse(odd.to_str().unwrap()).unwrap();
    assert_eq!((s.blob, s.index), (odd, None));
    // META containing + splits at the + after the file that exists
    let meta = dir.path().join("m+1");
    std::fs::write(&meta, b"x").unwrap();
    let s = LayerFileSpec::parse(&format!("{}+/t+2.tar", meta.display())).unwrap();
    assert_eq!(s.blob, meta);
    assert_eq!(s.index.unwrap().path, Path::new("/t+2.tar"));
    // a TAR that exists with # in its name keeps it
    let tar = dir.path().join("t#5");
    std::fs::write(&tar, b"x").unwrap();
    let s = LayerFileSpec::parse(&format!("{}+{}", meta.display(), tar.display())).unwrap();
    assert_eq!(
        s.index,
        Some(IndexTar {
            path: tar,
            offset: 0
        })
    );
}

#[test]
fn an_index_disk_is_meta_tar_zeros_tree_at_512_byte_blocks() {
    let dir = tempfile::tempdir().unwrap();
    // 3 blocks of metadata + 11 records of tar = 7168 bytes: 1024 bytes of zero padding
    for (prefix, meta_blocks, records) in [(0, 3, 11), (5, 9, 8), (2, 4, 6)] {
        let f = index_layer(
            dir.path(),
            &format!("m{prefix}"),
            meta_blocks,
            records,
            prefix,
        );
        let disk = LayerFileSpec::parse(&f.spec())
            .unwrap()
            .layer_disk(None)
            .unwrap();
        let mut expected = f.meta_bytes.clone();
        expected.extend_from_slice(&f.tar_bytes);
        let mut expected = padded(expected);
        assert_eq!(expected.len() as u64, f.data_len);
        expected.extend(padded(std::fs::read(&f.tree).unwrap()));
        assert_eq!(read_all(&disk), expected);
        assert_eq!(disk.logical_block_size(), 512);
        assert_eq!(disk.tree_offset(), Some(f.data_len));
        assert_eq!(disk.serial(), format!("m{prefix}").as_bytes());
        // served from the files themselves: the tar file is unchanged
        assert_eq!(
            std::fs::metadata(&f.tar).unwrap().len(),
            f.offset + f.tar_bytes.len() as u64 + 1024
        );
    }
}

#[test]
fn an_index_disk_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = index_layer(dir.path(), "m", 3, 11, 0);
    // the tar of another (shorter) layer
    let g = index_layer(dir.path(), "n", 3, 4, 0);
    let e = LayerFileSpec::parse(&format!("{}+{}", f.meta.display(), g.tar.display()))
        .unwrap()
        .layer_disk(None)
        .unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // a missing tree
    std::fs::remove_file(&f.tree).unwrap();
    let e = LayerFileSpec::parse(&f.spec())
        .unwrap()
        .layer_disk(None)
        .unwrap_err();
    assert!(e.to_string().contains("m.tree"), "{e}");
}

#[test]
fn a_layer_disk_advertises_its_trees_smallest_block() {
    let dir = tempfile::tempdir().unwrap();
    // containerd's tar-index blobs: 512/512 appended, with the sidecar
    let (blob, _) = appended_blob(dir.path(), "ci.erofs", 24, 512, 512);
    assert_eq!(
        LayerDisk::open(&blob, None, None)
            .unwrap()
            .logical_block_size(),
        512
    );
    let (blob, _) = appended_blob(dir.path(), "a.erofs", 16, 512, 4096);
    let disk = LayerDisk::open(&blob, None, None).unwrap();
    assert_eq!(disk.logical_block_size(), 512);
    // containerd's default layout: 4096/4096
    let (blob, _) = appended_blob(dir.path(), "b.erofs", 16, 4096, 4096);
    assert_eq!(
        LayerDisk::open(&blob, None, None)
            .unwrap()
            .logical_block_size(),
        4096
    );
    // no sidecar, no tree: the default
    let plain = dir.path().join("plain");
    std::fs::write(&plain, [1u8; 4096]).unwrap();
    assert_eq!(
        LayerDisk::open(&plain, None, None)
            .unwrap()
            .logical_block_size(),
        4096
    );
}

#[test]
fn a_composite_disk_with_an_index_layer_has_a_512_byte_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let f = index_layer(dir.path(), "m", 3, 11, 1);
    let (blob, _) = appended_blob(dir.path(), "b.erofs", 16, 4096, 4096);
    let index = LayerFileSpec::parse(&f.spec()).unwrap();
    let plain = LayerFileSpec::parse(blob.to_str().unwrap()).unwrap();
    let layers = [
        index.composite_layer().unwrap(),
        plain.composite_layer().unwrap(),
    ];
    // without the index layer: 4096
    let d4 = CompositeDisk::build(&layers[1..], 4096, "c").unwrap();
    assert_eq!(d4.logical_block_size(), 4096);
    let disk = CompositeDisk::build(&layers, 4096, "c").unwrap();
    assert_eq!(disk.logical_block_size(), 512);
    let bytes = read_all(&disk);
    // the GPT read back at 512-byte LBAs: header at LBA 1, entries at LBA 2
    let lba = 512usize;
    let h = &bytes[lba..2 * lba];
    assert_eq!(&h[0..8], b"EFI PART");
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(u64_at(h, 24), 1);
    assert_eq!(u64_at(h, 32), bytes.len() as u64 / 512 - 1);
    assert_eq!(u64_at(h, 72), 2);
    let mut zeroed = h[..92].to_vec();
    zeroed[16..20].fill(0);
    assert_eq!(crc32fast::hash(&zeroed).to_le_bytes(), h[16..20]);
    let entries = &bytes[2 * lba..2 * lba + 128 * 128];
    assert_eq!(crc32fast::hash(entries).to_le_bytes(), h[88..92]);
    let backup = &bytes[bytes.len() - lba..];
    assert_eq!(&backup[0..8], b"EFI PART");
    let whole = [
        read_all(&index.layer_disk(None).unwrap()),
        read_all(&plain.layer_disk(None).unwrap()),
    ];
    for (i, (placed, content)) in disk.layers().iter().zip(&whole).enumerate() {
        let e = &entries[i * 128..(i + 1) * 128];
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        assert_eq!(first * 512, placed.offset);
        assert!(placed.offset.is_multiple_of(ALIGN));
        assert_eq!((last + 1) * 512, placed.offset + placed.size);
        let at = placed.offset as usize;
        assert_eq!(&bytes[at..at + content.len()], content.as_slice());
    }
}

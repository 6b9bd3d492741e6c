//! The fuzz harness of the layer converter, in one place for the fuzz target and the tests.
//!
//! `fuzz/fuzz_targets/tar_convert.rs` hands every input to [`TarHarness::run`], and so does
//! `host-agent/tests/fuzz_corpus.rs` for every file of the committed corpus, so `cargo test`
//! runs exactly the fuzz target's code. Not used by the agent itself.
//!
//! An input is a layer as `layerpass convert` reads it: a tar stream, plain or gzip or zstd
//! (told apart by magic bytes), converted by [`convert_layer`] without dm-verity into a
//! temporary directory (`TMPDIR`: better on a disk than on tmpfs, where the converter's
//! 64 MiB `fallocate` reservation costs 20 ms a run). In a plain stream the harness first rewrites the checksum of every header the
//! sizes point at, so that mutated header fields reach the parser behind the checksum (the
//! compressed inputs and the unit tests keep the checksum check covered). The oracle:
//! - nothing panics;
//! - a rejected layer is an `InvalidArgument` error;
//! - a converted plain layer's diff ID is the SHA-256 of the input, and the image is whole
//!   EROFS blocks, as long as the report says, with the EROFS magic;
//! - the tar index writer ([`super::index::index_layer`], `convert layer --index`) given the
//!   same input agrees: it indexes exactly the layers the full converter converts (the two
//!   share the tar reader; a registry's layer must not pass one and fail the other), rejects
//!   the rest as `InvalidArgument`, and an index is whole 512-byte blocks whose superblock
//!   addresses the tar it read (the whole input for a plain tar).

use std::fs;
use std::io::{self, Cursor};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use layerpass_protocols::status::{HasKind, Kind};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::index::{IndexInfo, IndexOptions, index_layer};
use super::{BLOCK_SIZE, ConvertOptions, convert_layer, format};
use crate::compression::Compression;

/// Tar's block size.
const TAR_BLOCK: usize = 512;

/// Why a run could not be set up, or what it found broken.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The temporary directory could not be created.
    #[error("cannot create the fuzz harness's directory")]
    Setup(#[source] io::Error),
    /// The converted image could not be read back.
    #[error("cannot read back the converted image")]
    ReadBack(#[source] io::Error),
    /// A rejection that is not an `InvalidArgument` error.
    #[error("the layer was rejected as {kind:?}, not InvalidArgument: {message}")]
    Kind {
        /// The error's kind.
        kind: Kind,
        /// The error with its causes.
        message: String,
    },
    /// A converted layer whose report or image is wrong.
    #[error("converted layer: {0}")]
    Converted(String),
}

/// What one input came to (for tests that check a corpus reaches conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Rejected with an `InvalidArgument` error.
    Rejected,
    /// Converted; the image has this many bytes.
    Converted(u64),
}

/// The fuzz target's state: the directory every run converts into.
#[derive(Debug)]
pub struct TarHarness {
    dir: TempDir,
    out: PathBuf,
    /// The input as a file, for the index writer (it reads the tar in place).
    tar: PathBuf,
    /// The index's metadata (`.tree`, `.dmverity` and `.tar` beside it).
    index: PathBuf,
}

impl TarHarness {
    /// Creates the temporary directory (in `TMPDIR`).
    pub fn new() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("layerpass-fuzz-")
            .tempdir()
            .map_err(HarnessError::Setup)?;
        let out = dir.path().join("layer.erofs");
        let tar = dir.path().join("input.tar");
        let index = dir.path().join("index.meta");
        Ok(Self {
            dir,
            out,
            tar,
            index,
        })
    }

    /// The directory runs convert into.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Converts one input and checks the oracle.
    pub fn run(&self, input: &[u8]) -> Result<Outcome, HarnessError> {
        let plain = Compression::sniff(input) == Compression::None;
        let mut input = input.to_vec();
        if plain {
            fix_checksums(&mut input);
        }
        let opts = ConvertOptions {
            no_verity: true,
            mkfs_time: Some(0),
            ..ConvertOptions::default()
        };
        let converted = convert_layer(Cursor::new(&input), &self.out, &opts);
        let indexed = self.index(&input, plain)?;
        let report = match converted {
            Ok(report) => report,
            Err(e) if e.kind() == Kind::InvalidArgument => {
                if let Some(meta_bytes) = indexed {
                    return Err(HarnessError::Converted(format!(
                        "the full converter rejected the layer ({}) but the index writer \
                         indexed it ({meta_bytes} bytes of metadata)",
                        chain(&e)
                    )));
                }
                return Ok(Outcome::Rejected);
            }
            Err(e) => {
                return Err(HarnessError::Kind {
                    kind: e.kind(),
                    message: chain(&e),
                });
            }
        };
        if indexed.is_none() {
            return Err(HarnessError::Converted(
                "the full converter converted the layer but the index writer rejected it".into(),
            ));
        }
        let broken = |m: String| Err(HarnessError::Converted(m));
        if plain {
            let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&input)));
            if report.diff_id != diff_id {
                return broken(format!(
                    "diff ID {} for a plain tar whose SHA-256 is {diff_id}",
                    report.diff_id
                ));
            }
        }
        let file = fs::File::open(&self.out).map_err(HarnessError::ReadBack)?;
        let len = file.metadata().map_err(HarnessError::ReadBack)?.len();
        if len != report.erofs_size || report.blob_size != len || !len.is_multiple_of(BLOCK_SIZE) {
            return broken(format!(
                "{len} bytes on disk, report says EROFS {} and blob {} (blocks of {BLOCK_SIZE})",
                report.erofs_size, report.blob_size
            ));
        }
        let mut magic = [0u8; 4];
        file.read_exact_at(&mut magic, format::SUPER_OFFSET as u64)
            .map_err(HarnessError::ReadBack)?;
        if u32::from_le_bytes(magic) != format::SUPER_MAGIC {
            return broken("no EROFS magic in the superblock".into());
        }
        Ok(Outcome::Converted(len))
    }

    /// Runs the index writer on `input`: `Some(metadata bytes)` when it indexed the layer,
    /// `None` when it rejected it as `InvalidArgument`; a broken index or another kind of
    /// rejection is an error.
    fn index(&self, input: &[u8], plain: bool) -> Result<Option<u64>, HarnessError> {
        fs::write(&self.tar, input).map_err(HarnessError::Setup)?;
        let opts = IndexOptions {
            mkfs_time: Some(0),
            ..IndexOptions::default()
        };
        let report = match index_layer(&self.tar, &self.index, &opts) {
            Ok(report) => report,
            Err(e) if e.kind() == Kind::InvalidArgument => return Ok(None),
            Err(e) => {
                return Err(HarnessError::Kind {
                    kind: e.kind(),
                    message: format!("index writer: {}", chain(&e)),
                });
            }
        };
        let broken = |m: String| Err(HarnessError::Converted(format!("index: {m}")));
        if plain && report.tar_bytes != input.len() as u64 {
            return broken(format!(
                "indexed {} bytes of tar from a {}-byte plain input",
                report.tar_bytes,
                input.len()
            ));
        }
        let info = match IndexInfo::read(&self.index) {
            Ok(info) => info,
            Err(e) => return broken(format!("the metadata does not read back: {}", chain(&e))),
        };
        if info.meta_bytes != report.meta_bytes
            || info.extra_devices != 0
            || info.tar_len_padded() != report.tar_bytes.next_multiple_of(512)
        {
            return broken(format!(
                "superblock {info:?} does not match the report: {} bytes of metadata, {} of tar",
                report.meta_bytes, report.tar_bytes
            ));
        }
        Ok(Some(report.meta_bytes))
    }
}

/// An error with its causes, for the report.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Rewrites the checksum of every header in a plain tar stream, following the headers'
/// octal sizes (a base-256 size or a short block ends the walk; zero blocks are skipped).
pub fn fix_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while let Some(h) = tar.get_mut(at..at + TAR_BLOCK) {
        if h.iter().all(|&b| b == 0) {
            at += TAR_BLOCK;
            continue;
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let Some(size) = octal(&h[124..136]) else {
            return;
        };
        let Some(next) = usize::try_from(size.div_ceil(TAR_BLOCK as u64))
            .ok()
            .and_then(|blocks| blocks.checked_mul(TAR_BLOCK))
            .and_then(|body| body.checked_add(at + TAR_BLOCK))
        else {
            return;
        };
        at = next;
    }
}

/// An octal header field (spaces and NULs around the digits); `None` if it is not one.
fn octal(field: &[u8]) -> Option<u64> {
    let digits = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ');
    let mut n = 0u64;
    for d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        n = n.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// The seeds of `fuzz/corpus/tar_convert/`: a layer with one entry of each kind the
/// converter handles (directories, files, a symlink, a hard link, whiteouts, an opaque
/// directory, PAX and GNU long names, extended attributes), plain, gzip and zstd.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let tar = seed_tar().unwrap_or_default();
    let gzip = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar)
            .and_then(|()| e.finish())
            .unwrap_or_default()
    };
    let zstd = zstd::encode_all(&tar[..], 3).unwrap_or_default();
    vec![
        ("seed-layer.tar", tar),
        ("seed-layer.tar.gz", gzip),
        ("seed-layer.tar.zst", zstd),
    ]
}

fn seed_tar() -> io::Result<Vec<u8>> {
    use tar::{EntryType, Header};
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: EntryType, size: u64, mode: u32| {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        h
    };
    b.append_data(
        &mut header(EntryType::Directory, 0, 0o755),
        "etc/",
        io::empty(),
    )?;
    b.append_data(
        &mut header(EntryType::Regular, 12, 0o644),
        "etc/hostname",
        &b"layerpass-1\n"[..],
    )?;
    let big = vec![0x42u8; 5000];
    b.append_data(
        &mut header(EntryType::Regular, 5000, 0o600),
        "big",
        &big[..],
    )?;
    b.append_link(
        &mut header(EntryType::Symlink, 0, 0o777),
        "link",
        "etc/hostname",
    )?;
    b.append_link(
        &mut header(EntryType::Link, 0, 0o644),
        "hard",
        "etc/hostname",
    )?;
    b.append_data(
        &mut header(EntryType::Regular, 0, 0o644),
        "etc/.wh.removed",
        io::empty(),
    )?;
    b.append_data(
        &mut header(EntryType::Directory, 0, 0o755),
        "opaque/",
        io::empty(),
    )?;
    b.append_data(
        &mut header(EntryType::Regular, 0, 0o644),
        "opaque/.wh..wh..opq",
        io::empty(),
    )?;
    // A long name (GNU `L` record from the builder) and a PAX header with a path and an
    // extended attribute.
    b.append_data(
        &mut header(EntryType::Regular, 1, 0o644),
        "long/".repeat(30) + "name",
        &b"x"[..],
    )?;
    b.append_pax_extensions([
        ("path", &b"pax/file"[..]),
        ("SCHILY.xattr.user.fuzz", &b"value"[..]),
    ])?;
    b.append_data(
        &mut header(EntryType::Regular, 2, 0o644),
        "pax-file",
        &b"ok"[..],
    )?;
    b.append_data(
        &mut header(EntryType::Char, 0, 0o644),
        "dev-null",
        io::empty(),
    )?;
    b.into_inner()
}

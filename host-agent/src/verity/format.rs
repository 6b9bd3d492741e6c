//! `veritysetup format`, with containerd's appended layout as the default.
//!
//! Nothing is left half-made: a separate hash file is built under a temporary name and
//! renamed into place; an appended tree is rolled back (file length restored, any
//! overwritten bytes put back) if anything fails.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use layerpass_fsutil::{persist, temp_beside};
use serde::Serialize;
use uuid::Uuid;

use super::Progress;
use super::build::{Blocks, Leaves, build_from};
use super::error::VerityError;
use super::geometry::Geometry;
use super::hash::RootHash;
use super::leaves::LeafDigests;
use super::params::VerityParams;
use super::sidecar::{Sidecar, sidecar_path};
use super::superblock::{SUPERBLOCK_SIZE, Superblock};

/// Where the hash area goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashTarget {
    /// In the data file, after the data (containerd's layout).
    Append,
    /// In a separate file, replaced atomically.
    File(PathBuf),
}

/// Everything `layerpass verity format` takes.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    pub params: VerityParams,
    /// Write the 512-byte veritysetup superblock before the tree.
    pub superblock: bool,
    /// Superblock UUID; random when absent (as veritysetup).
    pub uuid: Option<Uuid>,
    /// Byte offset of the hash area (superblock or tree) in the hash file. Default: the
    /// end of the data when appending, 0 in a separate file.
    pub hash_offset: Option<u64>,
    /// Data blocks to protect. Default: the whole (padded) data file.
    pub data_blocks: Option<u64>,
    pub target: HashTarget,
    /// Zero-pad the data file to a whole number of data blocks (appending only).
    pub pad: bool,
    /// Write containerd's `<data>.dmverity` sidecar (appending with a superblock only).
    pub sidecar: bool,
}

impl FormatOptions {
    /// containerd's layout and parameters for `data`: appended, superblock, sidecar,
    /// sha256, 4096/4096, 32 zero bytes of salt.
    pub fn containerd() -> Self {
        Self {
            params: VerityParams::containerd(),
            superblock: true,
            uuid: None,
            hash_offset: None,
            data_blocks: None,
            target: HashTarget::Append,
            pad: false,
            sidecar: true,
        }
    }
}

/// What was written; the JSON form is `layerpass verity format --json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FormatReport {
    pub root_hash: String,
    /// Hex, or `-` for none.
    pub salt: String,
    /// Byte offset of the hash area (superblock, or tree without one) in `hash_file`.
    pub hash_offset: u64,
    pub data_blocks: u64,
    /// Kernel table `hash_start_block`: the first tree block, in hash blocks.
    pub hash_start_block: u64,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub hash_algorithm: String,
    pub format: u32,
    pub superblock: bool,
    pub uuid: Option<String>,
    /// Bytes of the tree alone.
    pub tree_size: u64,
    /// Zero bytes appended to the data by `pad`.
    pub padded_bytes: u64,
    pub data_file: PathBuf,
    pub hash_file: PathBuf,
    pub sidecar: Option<PathBuf>,
}

impl FormatReport {
    /// The dm-verity table line for a device holding data and tree (`<dev>` substituted).
    pub fn table(&self, data_dev: &str, hash_dev: &str) -> String {
        format!(
            "0 {} verity {} {data_dev} {hash_dev} {} {} {} {} {} {} {}",
            self.data_blocks * u64::from(self.data_block_size) / 512,
            self.format,
            self.data_block_size,
            self.hash_block_size,
            self.data_blocks,
            self.hash_start_block,
            self.hash_algorithm,
            self.root_hash,
            self.salt,
        )
    }
}

/// Formats `data` as `opts` says and returns what was written.
pub fn format_file(
    data_path: &Path,
    opts: &FormatOptions,
    progress: Option<Progress<'_>>,
) -> Result<FormatReport, VerityError> {
    format_impl(data_path, opts, None, progress)
}

/// Like [`format_file`], but with the leaf digests recorded while `data_path` was written
/// ([`LeafDigests`]): the data is not read again. The recorded blocks must be exactly the
/// data blocks the options select, with the same parameters.
pub fn format_file_from_leaves(
    data_path: &Path,
    opts: &FormatOptions,
    leaves: &LeafDigests,
) -> Result<FormatReport, VerityError> {
    format_impl(data_path, opts, Some(leaves), None)
}

/// Writes the separate hash file of `opts.target` for data that exists only as the
/// recorded `leaves` of its `opts.data_blocks` blocks (no data file is read or written;
/// `data_name` names the data in the report and errors). The tar index uses it: its data,
/// `[metadata][tar][padding]`, is never one file.
///
/// # Errors
/// `opts` does not name a separate hash file or the data blocks, the digests do not cover
/// exactly those blocks, or writing failed.
pub fn format_hash_file_from_leaves(
    data_name: &Path,
    opts: &FormatOptions,
    leaves: &LeafDigests,
) -> Result<FormatReport, VerityError> {
    let (HashTarget::File(_), Some(blocks), false) = (&opts.target, opts.data_blocks, opts.sidecar)
    else {
        return Err(VerityError::Leaves(
            "data known only by its digests needs a separate hash file, a data block count \
             and no sidecar"
                .into(),
        ));
    };
    let size = blocks.saturating_mul(u64::from(opts.params.data_block_size));
    format_with(data_name, Some(size), opts, Some(leaves), None)
}

fn format_impl(
    data_path: &Path,
    opts: &FormatOptions,
    leaves: Option<&LeafDigests>,
    progress: Option<Progress<'_>>,
) -> Result<FormatReport, VerityError> {
    format_with(data_path, None, opts, leaves, progress)
}

/// `virtual_size`: the data is not a file, only `leaves` of that many bytes.
fn format_with(
    data_path: &Path,
    virtual_size: Option<u64>,
    opts: &FormatOptions,
    leaves: Option<&LeafDigests>,
    progress: Option<Progress<'_>>,
) -> Result<FormatReport, VerityError> {
    opts.params.validate()?;
    let target = match &opts.target {
        HashTarget::File(p) if virtual_size.is_none() && same_file(p, data_path) => {
            HashTarget::Append
        }
        t => t.clone(),
    };
    let appending = target == HashTarget::Append;
    if opts.sidecar && !(appending && opts.superblock) {
        return Err(VerityError::BadSidecar {
            path: sidecar_path(data_path),
            reason: "containerd's sidecar describes a superblock and tree appended to the data; \
                     drop --sidecar, or append with a superblock"
                .into(),
        });
    }
    let (data, size) = match virtual_size {
        Some(size) if leaves.is_some() && !appending => (None, size),
        Some(_) => {
            return Err(VerityError::Leaves(
                "data known only by its digests cannot be appended to or read".into(),
            ));
        }
        None => {
            let data = OpenOptions::new()
                .read(true)
                .write(appending)
                .open(data_path)
                .map_err(VerityError::io("open", data_path))?;
            let size = data
                .metadata()
                .map_err(VerityError::io("stat", data_path))?
                .len();
            (Some(data), size)
        }
    };
    let plan = Plan::new(data_path, size, opts, appending)?;
    let geometry = Geometry::new(&opts.params, plan.data_blocks)?;
    if let Some(l) = leaves {
        l.check(&opts.params, plan.data_blocks)?;
    }
    let tree_end = plan.tree_start + geometry.tree_bytes();
    let uuid = opts
        .superblock
        .then(|| opts.uuid.unwrap_or_else(Uuid::new_v4));
    let superblock = uuid.map(|uuid| Superblock {
        params: opts.params.clone(),
        data_blocks: plan.data_blocks,
        uuid,
    });

    let write_area = |file: &File, path: &Path| -> Result<RootHash, VerityError> {
        if let Some(sb) = &superblock {
            // The superblock area reaches the tree start. Without a tree (one data block)
            // veritysetup writes at most 4096 bytes of it; so do we, to stay identical.
            let mut len = plan.tree_start - plan.hash_offset;
            if geometry.levels.is_empty() {
                len = len.min(4096);
            }
            let mut area = vec![0u8; len as usize];
            area[..SUPERBLOCK_SIZE].copy_from_slice(&sb.to_bytes());
            file.write_all_at(&area, plan.hash_offset)
                .map_err(VerityError::io("write", path))?;
        }
        let source = match (leaves, &data) {
            (Some(d), _) => Leaves::Digests(d),
            (None, None) => {
                return Err(VerityError::Leaves("no data and no digests".into()));
            }
            (None, Some(data)) => Leaves::Data(
                Blocks {
                    file: data,
                    path: data_path,
                    offset: 0,
                    block_size: opts.params.data_block_size as usize,
                },
                progress,
            ),
        };
        build_from(
            source,
            (file, path),
            plan.tree_start,
            &opts.params,
            &geometry,
        )
    };

    let (root, hash_file, sidecar) = match &target {
        HashTarget::Append => {
            let Some(data) = &data else {
                return Err(VerityError::Leaves(
                    "data known only by its digests cannot be appended to".into(),
                ));
            };
            let guard = AppendGuard::new(data, data_path, size, plan.hash_offset, tree_end)?;
            if plan.data_end > size {
                data.set_len(plan.data_end)
                    .map_err(VerityError::io("pad", data_path))?;
            }
            let root = write_area(data, data_path)?;
            data.sync_all()
                .map_err(VerityError::io("sync", data_path))?;
            let sidecar = if opts.sidecar {
                let p = sidecar_path(data_path);
                Sidecar {
                    roothash: root.to_hex(),
                    hashoffset: plan.hash_offset,
                }
                .write(&p)?;
                Some(p)
            } else {
                None
            };
            guard.commit();
            (root, data_path.to_owned(), sidecar)
        }
        HashTarget::File(hash_path) => {
            let root = write_hash_file(hash_path, plan.hash_offset, &write_area)?;
            (root, hash_path.clone(), None)
        }
    };

    Ok(FormatReport {
        root_hash: root.to_hex(),
        salt: opts.params.salt.to_table_hex(),
        hash_offset: plan.hash_offset,
        data_blocks: plan.data_blocks,
        hash_start_block: plan.tree_start / u64::from(opts.params.hash_block_size),
        data_block_size: opts.params.data_block_size,
        hash_block_size: opts.params.hash_block_size,
        hash_algorithm: opts.params.algorithm.name().to_owned(),
        format: opts.params.hash_type.number(),
        superblock: opts.superblock,
        uuid: uuid.map(|u| u.hyphenated().to_string()),
        tree_size: geometry.tree_bytes(),
        padded_bytes: plan.data_end.saturating_sub(size),
        data_file: data_path.to_owned(),
        hash_file,
        sidecar,
    })
}

/// Sizes and offsets decided before anything is written.
struct Plan {
    data_blocks: u64,
    data_end: u64,
    hash_offset: u64,
    tree_start: u64,
}

impl Plan {
    fn new(
        path: &Path,
        size: u64,
        opts: &FormatOptions,
        appending: bool,
    ) -> Result<Self, VerityError> {
        let dbs = u64::from(opts.params.data_block_size);
        let hbs = u64::from(opts.params.hash_block_size);
        if size == 0 {
            return Err(VerityError::EmptyData {
                path: path.to_owned(),
            });
        }
        let data_blocks = match opts.data_blocks {
            Some(0) => return Err(VerityError::ZeroDataBlocks),
            Some(n) => {
                if n > size / dbs {
                    return Err(VerityError::NotEnoughData {
                        path: path.to_owned(),
                        available: size / dbs,
                        requested: n,
                    });
                }
                n
            }
            None if size.is_multiple_of(dbs) => size / dbs,
            None if opts.pad && appending => size.div_ceil(dbs),
            None => {
                return Err(VerityError::PartialBlock {
                    path: path.to_owned(),
                    size,
                    block_size: opts.params.data_block_size,
                    remainder: size % dbs,
                });
            }
        };
        let data_end = data_blocks * dbs;
        let hash_offset = opts
            .hash_offset
            .unwrap_or(if appending { data_end } else { 0 });
        if appending && hash_offset < data_end {
            return Err(VerityError::HashOffsetInsideData {
                hash_offset,
                data_end,
            });
        }
        let alignment = if opts.superblock {
            SUPERBLOCK_SIZE as u64
        } else {
            hbs
        };
        if !hash_offset.is_multiple_of(alignment) {
            return Err(VerityError::HashOffsetAlignment {
                hash_offset,
                alignment,
            });
        }
        let tree_start = if opts.superblock {
            (hash_offset + SUPERBLOCK_SIZE as u64).div_ceil(hbs) * hbs
        } else {
            hash_offset
        };
        Ok(Self {
            data_blocks,
            data_end,
            hash_offset,
            tree_start,
        })
    }
}

/// Restores an appended-to data file unless committed: bytes overwritten past the data are
/// put back and the length reset.
struct AppendGuard<'a> {
    file: &'a File,
    original_len: u64,
    saved_at: u64,
    saved: Vec<u8>,
    committed: bool,
}

impl<'a> AppendGuard<'a> {
    fn new(
        file: &'a File,
        path: &Path,
        original_len: u64,
        from: u64,
        to: u64,
    ) -> Result<Self, VerityError> {
        let end = to.min(original_len);
        let mut saved = Vec::new();
        if from < end {
            saved.resize((end - from) as usize, 0);
            file.read_exact_at(&mut saved, from)
                .map_err(VerityError::io("read", path))?;
        }
        Ok(Self {
            file,
            original_len,
            saved_at: from,
            saved,
            committed: false,
        })
    }

    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let restored = self
            .file
            .write_all_at(&self.saved, self.saved_at)
            .and_then(|()| self.file.set_len(self.original_len))
            .and_then(|()| self.file.sync_all());
        if let Err(e) = restored {
            tracing::error!(error = %e, "could not roll back a failed dm-verity format");
        }
    }
}

/// Builds a separate hash file under a temporary name, keeping the first `keep` bytes of an
/// existing file (veritysetup leaves what precedes `--hash-offset` alone), then renames it.
fn write_hash_file(
    path: &Path,
    keep: u64,
    write_area: &dyn Fn(&File, &Path) -> Result<RootHash, VerityError>,
) -> Result<RootHash, VerityError> {
    let tmp = temp_beside(path)?;
    if keep > 0 {
        match File::open(path) {
            Ok(old) => {
                let mut prefix = io::Read::take(&old, keep);
                io::copy(&mut prefix, &mut tmp.as_file()).map_err(VerityError::io("copy", path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(VerityError::Io {
                    op: "open",
                    path: path.to_owned(),
                    source: e,
                });
            }
        }
    }
    let root = write_area(tmp.as_file(), tmp.path())?;
    persist(tmp, path)?;
    Ok(root)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

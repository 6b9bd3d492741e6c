//! Where blobs and metadata files live: an OCI layout directory or an indexed tar archive.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::archive::{TarArchive, normalize};
use super::digest::Digest;
use super::error::ImageError;
use super::verify::{VerifyingReader, read_verified};

/// Readers handed out for blobs buffer this much.
const READ_BUFFER: usize = 256 * 1024;

/// A verified blob reader.
pub type BlobReader = VerifyingReader<Box<dyn Read + Send>>;

/// A blob to read: its digest and size, and where it is in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    /// Path inside the store (normalised, relative).
    pub path: String,
}

impl BlobRef {
    /// The blob at `blobs/sha256/<hex>`, as OCI layouts store it.
    pub fn oci(digest: Digest, size: u64) -> Self {
        let path = format!("blobs/{}/{}", digest.algorithm().name(), digest.hex());
        Self { digest, size, path }
    }
}

/// The container the image is read from.
#[derive(Debug)]
pub enum Store {
    /// An OCI image layout directory.
    Dir { root: PathBuf },
    /// A tar archive (`docker save`, or an OCI layout in a tar).
    Tar(TarArchive),
}

impl Store {
    /// Where `path` is, for messages: a file path, or `archive:member`.
    pub fn location(&self, path: &str) -> String {
        match self {
            Self::Dir { root } => root.join(path).display().to_string(),
            Self::Tar(t) => format!("{}:{path}", t.path().display()),
        }
    }

    /// Whether the store has a file at `path`.
    pub fn contains(&self, path: &str) -> bool {
        match self {
            Self::Dir { root } => root.join(path).is_file(),
            Self::Tar(t) => t.contains(path),
        }
    }

    /// Reads a small unverified metadata file (`oci-layout`, `index.json`,
    /// `manifest.json`) of at most `limit` bytes.
    pub fn read_meta(&self, path: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open_raw(path)?;
        if size > limit {
            return Err(ImageError::TooLarge {
                what: self.location(path),
                size,
                limit,
            });
        }
        self.read_up_to(reader, path, limit)
    }

    /// Size of the file at `path` in the store.
    pub fn size_of(&self, path: &str) -> Result<u64, ImageError> {
        self.open_raw(path).map(|(_, size)| size)
    }

    /// Up to `n` leading bytes of `path` (to recognise compression).
    pub fn head(&self, path: &str, n: usize) -> Result<Vec<u8>, ImageError> {
        let (reader, _) = self.open_raw(path)?;
        self.read_up_to(reader, path, n as u64)
    }

    /// Up to `limit` bytes of `reader`, opened on `path`.
    fn read_up_to(&self, reader: impl Read, path: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        reader
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| ImageError::Io {
                op: "read",
                path: self.location(path).into(),
                source: e,
            })?;
        Ok(out)
    }

    /// Opens `blob` for reading through a [`VerifyingReader`]; a size different from the
    /// descriptor's fails before any byte is read.
    pub fn open_blob(&self, blob: &BlobRef) -> Result<BlobReader, ImageError> {
        let location = self.location(&blob.path);
        let (reader, size) = self.open_raw(&blob.path).map_err(|e| match e {
            ImageError::MissingMember { .. } => ImageError::MissingBlob {
                digest: blob.digest.to_string(),
                location: location.clone(),
            },
            ImageError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ImageError::MissingBlob {
                    digest: blob.digest.to_string(),
                    location: location.clone(),
                }
            }
            other => other,
        })?;
        if size != blob.size {
            return Err(ImageError::SizeMismatch {
                digest: blob.digest.to_string(),
                location,
                expected: blob.size,
                actual: size,
            });
        }
        let reader: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(READ_BUFFER, reader));
        Ok(VerifyingReader::new(
            reader,
            blob.digest.clone(),
            blob.size,
            location,
        ))
    }

    /// Reads a whole blob of at most `limit` bytes, verified.
    pub fn read_blob(&self, blob: &BlobRef, limit: u64, what: &str) -> Result<Vec<u8>, ImageError> {
        if blob.size > limit {
            return Err(ImageError::TooLarge {
                what: what.to_owned(),
                size: blob.size,
                limit,
            });
        }
        read_verified(self.open_blob(blob)?, limit, what)
    }

    /// The file holding the bytes of `blob` and the offset they start at: the blob file of
    /// a layout directory (offset 0, its real path) or the archive (the member's offset),
    /// so that they can be referenced in place. The blob must have its descriptor's size.
    pub fn file_range(&self, blob: &BlobRef) -> Result<(PathBuf, u64), ImageError> {
        let location = self.location(&blob.path);
        let (file, offset, size) = match self {
            Self::Dir { root } => {
                let (real, file) = real_file_in_dir(root, &blob.path)?;
                let size = file
                    .metadata()
                    .map_err(ImageError::io("stat", &real))?
                    .len();
                (real, 0, size)
            }
            Self::Tar(t) => {
                let (offset, size) = t.locate(&blob.path)?;
                let path =
                    std::path::absolute(t.path()).map_err(ImageError::io("resolve", t.path()))?;
                (path, offset, size)
            }
        };
        if size != blob.size {
            return Err(ImageError::SizeMismatch {
                digest: blob.digest.to_string(),
                location,
                expected: blob.size,
                actual: size,
            });
        }
        Ok((file, offset))
    }

    fn open_raw(&self, path: &str) -> Result<(Box<dyn Read + Send>, u64), ImageError> {
        match self {
            Self::Dir { root } => {
                let (file, size) = open_in_dir(root, path)?;
                Ok((Box::new(file), size))
            }
            Self::Tar(t) => {
                let (section, size) = t.open(path)?;
                Ok((Box::new(section), size))
            }
        }
    }
}

/// Opens `rel` under `root`, refusing anything that is not a regular file whose real path
/// stays inside `root` (a symlink out of the layout, a FIFO, a device).
fn open_in_dir(root: &Path, rel: &str) -> Result<(File, u64), ImageError> {
    let (real, file) = real_file_in_dir(root, rel)?;
    let meta = file.metadata().map_err(ImageError::io("stat", &real))?;
    Ok((file, meta.len()))
}

/// The real path of `rel` under `root` and the file opened, refused as [`open_in_dir`]
/// says.
fn real_file_in_dir(root: &Path, rel: &str) -> Result<(PathBuf, File), ImageError> {
    let outside = || ImageError::OutsideLayout {
        location: root.join(rel).display().to_string(),
    };
    let rel = normalize(rel).ok_or_else(outside)?;
    let path = root.join(&rel);
    let real = path.canonicalize().map_err(ImageError::io("open", &path))?;
    let real_root = root.canonicalize().map_err(ImageError::io("open", root))?;
    if !real.starts_with(&real_root) {
        return Err(outside());
    }
    let file = File::open(&real).map_err(ImageError::io("open", &path))?;
    let meta = file.metadata().map_err(ImageError::io("stat", &path))?;
    if !meta.is_file() {
        return Err(outside());
    }
    Ok((real, file))
}

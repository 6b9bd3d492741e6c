//! Where a layer's bytes come from: a layer of an image (read through the image reader's
//! verifying reader: digest and size checked) or a tar file given on the command line
//! (plain, gzip or zstd; its digest is computed while it is read).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use layerpass_types::Digest;
use sha2::{Digest as _, Sha256};

use super::error::ReferenceError;
use crate::image::{BlobReader, Layer};

/// One layer to compute a root hash for.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A layer of an image: its blob digest and diff ID are known (and checked).
    Image(Layer),
    /// A tar file; nothing is known before it is read.
    File(PathBuf),
}

impl Source {
    /// How messages and reports name it.
    pub fn name(&self) -> String {
        match self {
            Self::Image(l) => l.digest.to_string(),
            Self::File(p) => p.display().to_string(),
        }
    }

    /// The layer's bytes as stored (compressed, if it is).
    pub fn open(&self, index: usize) -> Result<Stream, ReferenceError> {
        match self {
            Self::Image(l) => {
                let reader = l.open().map_err(|e| ReferenceError::Layer {
                    index,
                    name: self.name(),
                    reason: e.to_string(),
                })?;
                Ok(Stream::Blob {
                    reader,
                    location: l.location(),
                    digest: l.digest.clone(),
                })
            }
            Self::File(p) => {
                let file = File::open(p).map_err(ReferenceError::io("open", p))?;
                Ok(Stream::File {
                    file: BufReader::with_capacity(1 << 16, file),
                    hash: Sha256::new(),
                })
            }
        }
    }
}

/// A layer's stored bytes being read.
pub(super) enum Stream {
    Blob {
        reader: BlobReader,
        location: String,
        digest: Digest,
    },
    File {
        file: BufReader<File>,
        hash: Sha256,
    },
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Blob { .. } => "Stream::Blob",
            Self::File { .. } => "Stream::File",
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Blob { reader, .. } => reader.read(buf),
            Self::File { file, hash } => {
                let n = file.read(buf)?;
                hash.update(&buf[..n]);
                Ok(n)
            }
        }
    }
}

impl Stream {
    /// Reads what the consumer left and returns the digest of the stored bytes (for an
    /// image layer, after checking it is the descriptor's).
    pub fn finish(self) -> io::Result<Digest> {
        match self {
            Self::Blob {
                reader,
                location,
                digest,
            } => {
                reader
                    .finish()
                    .map_err(|e| io::Error::other(format!("{location}: {e}")))?;
                Ok(digest)
            }
            Self::File { mut file, mut hash } => {
                let mut buf = vec![0_u8; 1 << 16];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => hash.update(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Digest::sha256(&hash.finalize().into()))
            }
        }
    }
}

/// The digest and diff ID of a tar file (plain, gzip or zstd), read once to the end.
pub(super) fn digests_of(
    source: &Source,
    index: usize,
) -> Result<(Digest, Digest), ReferenceError> {
    let bad = |reason: String| ReferenceError::Layer {
        index,
        name: source.name(),
        reason,
    };
    let mut stream = source.open(index)?;
    let mut diff = Sha256::new();
    {
        let (_, mut tar) =
            crate::erofs::open_tar(&mut stream).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mut buf = vec![0_u8; 1 << 20];
        loop {
            match tar.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => diff.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(bad(format!("cannot decompress it: {e}"))),
            }
        }
    }
    let digest = stream
        .finish()
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    Ok((digest, Digest::sha256(&diff.finalize().into())))
}

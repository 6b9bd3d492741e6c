//! A `Read` wrapper that checks a blob's size and sha256 against its descriptor.
//!
//! Bytes are passed through as they are read; a blob longer than its descriptor fails as
//! soon as the extra byte arrives, and at end of file the size and digest are compared.
//! Consumers that may stop before the end (a tar reader stops at the end-of-archive
//! marker) must call [`VerifyingReader::finish`], which reads the rest and checks it.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::ImageError;

/// Passes a blob through, hashing it; fails at end of file unless the blob matches.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected: Digest,
    size: u64,
    read: u64,
    location: String,
    verified: bool,
}

impl<R> std::fmt::Debug for VerifyingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingReader")
            .field("expected", &self.expected)
            .field("size", &self.size)
            .field("read", &self.read)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield the blob `expected` of `size` bytes found at
    /// `location` (named in errors).
    pub fn new(inner: R, expected: Digest, size: u64, location: String) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            expected,
            size,
            read: 0,
            location,
            verified: false,
        }
    }

    /// The digest the blob must have.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Bytes passed through so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads whatever the consumer left unread and checks size and digest. Returns the
    /// blob's size.
    pub fn finish(mut self) -> Result<u64, ImageError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(self.read),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(into_image_error(e, &self.location)),
            }
        }
    }

    fn check(&mut self) -> Result<(), ImageError> {
        if self.read != self.size {
            return Err(ImageError::SizeMismatch {
                digest: self.expected.to_string(),
                location: self.location.clone(),
                expected: self.size,
                actual: self.read,
            });
        }
        let hasher = std::mem::take(&mut self.hasher);
        let actual = Digest::sha256(&hasher.finalize().into());
        if actual != self.expected {
            return Err(ImageError::DigestMismatch {
                digest: self.expected.to_string(),
                location: self.location.clone(),
                actual: actual.to_string(),
            });
        }
        self.verified = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            return Ok(0);
        }
        self.read += n as u64;
        if self.read > self.size {
            let e = ImageError::TooLong {
                digest: self.expected.to_string(),
                location: self.location.clone(),
                expected: self.size,
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Recovers the [`ImageError`] carried by an I/O error from a [`VerifyingReader`], or wraps
/// a plain I/O error with the blob's location.
pub fn into_image_error(e: io::Error, location: &str) -> ImageError {
    if !e.get_ref().is_some_and(|inner| inner.is::<ImageError>()) {
        return ImageError::Io {
            op: "read",
            path: location.into(),
            source: e,
        };
    }
    match e.into_inner().map(|inner| inner.downcast::<ImageError>()) {
        Some(Ok(img)) => *img,
        _ => ImageError::invalid(location, "unreadable blob"),
    }
}

/// Reads a whole blob of at most `limit` bytes through a verifying reader.
pub fn read_verified<R: Read>(
    mut reader: VerifyingReader<R>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    if reader.size > limit {
        return Err(ImageError::TooLarge {
            what: what.to_owned(),
            size: reader.size,
            limit,
        });
    }
    let mut out = Vec::with_capacity(usize::try_from(reader.size).unwrap_or(0));
    let location = reader.location.clone();
    reader
        .read_to_end(&mut out)
        .map_err(|e| into_image_error(e, &location))?;
    reader.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> Digest {
        Digest::sha256(&Sha256::digest(bytes).into())
    }

    fn verify(data: &[u8], expected: &Digest, size: u64) -> Result<Vec<u8>, ImageError> {
        let r = VerifyingReader::new(data, expected.clone(), size, "blobs/x".into());
        read_verified(r, 1 << 20, "blob")
    }

    #[test]
    fn passes_matching_blob() {
        let data = b"hello layer".as_slice();
        assert_eq!(
            verify(data, &digest_of(data), data.len() as u64).unwrap(),
            data
        );
    }

    #[test]
    fn rejects_tampered_blob() {
        let e = verify(b"hello layex", &digest_of(b"hello layer"), 11).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        assert!(e.to_string().contains("blobs/x"), "{e}");
    }

    #[test]
    fn rejects_short_and_long_blobs() {
        let d = digest_of(b"hello layer");
        let e = verify(b"hello", &d, 11).unwrap_err();
        assert!(
            matches!(e, ImageError::SizeMismatch { actual: 5, .. }),
            "{e}"
        );
        let e = verify(b"hello layer!", &d, 11).unwrap_err();
        assert!(matches!(e, ImageError::TooLong { .. }), "{e}");
    }

    #[test]
    fn finish_drains_what_the_consumer_left() {
        let data = vec![7u8; 200_000];
        let mut r = VerifyingReader::new(data.as_slice(), digest_of(&data), 200_000, "b".into());
        let mut head = [0u8; 10];
        r.read_exact(&mut head).unwrap();
        assert_eq!(r.finish().unwrap(), 200_000);
        let mut bad = data.clone();
        bad[199_999] = 8;
        let mut r = VerifyingReader::new(bad.as_slice(), digest_of(&data), 200_000, "b".into());
        r.read_exact(&mut head).unwrap();
        assert!(matches!(r.finish(), Err(ImageError::DigestMismatch { .. })));
    }

    #[test]
    fn limit_applies_before_reading() {
        let r = VerifyingReader::new(b"x".as_slice(), digest_of(b"x"), 1 << 30, "b".into());
        assert!(matches!(
            read_verified(r, 1024, "config"),
            Err(ImageError::TooLarge { .. })
        ));
    }
}

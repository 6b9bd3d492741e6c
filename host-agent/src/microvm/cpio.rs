//! A minimal writer for the `newc` cpio format the kernel unpacks as an initramfs.

use std::io::{self, Write};

/// File types, as the `S_IF*` bits of the mode field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link; the data is the target.
    Symlink,
    /// Character device with (major, minor).
    CharDev(u32, u32),
}

impl Kind {
    fn bits(self) -> u32 {
        match self {
            Self::Dir => 0o040_000,
            Self::File => 0o100_000,
            Self::Symlink => 0o120_000,
            Self::CharDev(..) => 0o020_000,
        }
    }
}

/// Writes entries one after the other; [`Writer::finish`] adds the trailer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> Writer<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    /// One entry: `name` without a leading `/`, permission bits in `perm`.
    pub fn entry(&mut self, name: &str, kind: Kind, perm: u32, data: &[u8]) -> io::Result<()> {
        let (rmaj, rmin) = match kind {
            Kind::CharDev(maj, min) => (maj, min),
            _ => (0, 0),
        };
        let nlink = if kind == Kind::Dir { 2 } else { 1 };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(
            name,
            ino,
            kind.bits() | (perm & 0o7777),
            nlink,
            data.len(),
            rmaj,
            rmin,
        )?;
        self.put(data)?;
        self.pad()
    }

    /// Writes the `TRAILER!!!` entry and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, 1, 0, 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    #[allow(clippy::too_many_arguments, reason = "mirrors the header fields")]
    fn header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        size: usize,
        rmaj: u32,
        rmin: u32,
    ) -> io::Result<()> {
        let size = u32::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))?;
        let namesize = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio name too long"))?;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, namesize, 0,
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = self.written % 4;
        if rem != 0 {
            let zeros = [0_u8; 3];
            let n = usize::try_from(4 - rem).unwrap_or(0);
            self.put(&zeros[..n])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_trailed() {
        let mut w = Writer::new(Vec::new());
        w.entry("bin", Kind::Dir, 0o755, &[]).unwrap();
        w.entry("bin/x", Kind::File, 0o755, b"hello").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(&out[..6], b"070701");
        assert_eq!(out.len() % 4, 0);
        // Second header: 110 bytes of header + "bin\0" (114, padded to 116).
        assert_eq!(&out[116..122], b"070701");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("bin/x\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
    }
}

//! The TPM's character device (`/dev/tpmrm0`, the kernel's resource manager): one
//! command written whole, its response read back. Also works over a stream socket (a
//! software TPM's server socket in tests): the response is read until its size field
//! is reached.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::command::{HEADER_LEN, MAX_RESPONSE_LEN};

/// The kernel's TPM resource manager: commands from several processes do not interfere.
pub const DEFAULT_DEVICE: &str = "/dev/tpmrm0";

/// Something commands can be written to and responses read from.
pub trait Stream: Read + Write + Send + fmt::Debug {}
impl<T: Read + Write + Send + fmt::Debug> Stream for T {}

/// An open TPM.
#[derive(Debug)]
pub struct TpmDevice {
    path: PathBuf,
    stream: Box<dyn Stream>,
}

impl TpmDevice {
    /// Opens the character device at `path` for reading and writing.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self::from_stream(path, file))
    }

    /// A TPM behind `stream` (named `path` in messages).
    pub fn from_stream(path: &Path, stream: impl Stream + 'static) -> Self {
        Self {
            path: path.to_owned(),
            stream: Box::new(stream),
        }
    }

    /// Where the TPM is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `command` and returns the response's bytes: the header, then as many bytes
    /// as its size field says (at most [`MAX_RESPONSE_LEN`]); the caller parses them.
    /// A response that ends early is returned as it is (the parser names what is
    /// missing).
    pub fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        // The kernel takes a command in one write (a partial one is an error there).
        let written = self.stream.write(command)?;
        if written != command.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("wrote {written} of the command's {} bytes", command.len()),
            ));
        }
        let mut buf = vec![0u8; MAX_RESPONSE_LEN];
        let mut got = 0;
        loop {
            let want = if got >= HEADER_LEN {
                let size = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > MAX_RESPONSE_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the response's size field says {size} bytes, more than {MAX_RESPONSE_LEN}"
                        ),
                    ));
                }
                size
            } else {
                HEADER_LEN
            };
            if got >= want {
                break;
            }
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Hands out a canned response in the given chunks and keeps what was written.
    #[derive(Debug, Default)]
    struct Canned {
        written: Vec<u8>,
        chunks: VecDeque<Vec<u8>>,
    }

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(chunk) = self.chunks.pop_front() else {
                return Ok(0);
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            Ok(n)
        }
    }

    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn device(chunks: &[&[u8]]) -> TpmDevice {
        let canned = Canned {
            written: Vec::new(),
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
        };
        TpmDevice::from_stream(Path::new("/dev/test-tpm"), canned)
    }

    const OK: [u8; 19] = [
        0x80, 0x02, 0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
    ];

    #[test]
    fn a_response_is_read_whole_or_in_pieces_up_to_its_size() {
        assert_eq!(device(&[&OK]).transact(&[1, 2]).unwrap(), OK);
        assert_eq!(
            device(&[&OK[..3], &OK[3..12], &OK[12..]])
                .transact(&[1])
                .unwrap(),
            OK
        );
        // Nothing past the declared size is read.
        let mut dev = device(&[&OK, &[0xff]]);
        assert_eq!(dev.transact(&[1]).unwrap(), OK);
        // A stream that ends early gives what it had.
        assert_eq!(device(&[&OK[..12]]).transact(&[1]).unwrap(), &OK[..12]);
    }

    #[test]
    fn an_oversized_response_is_refused() {
        let header = [0x80, 0x01, 0, 0, 0x10, 0x01, 0, 0, 0, 0];
        let err = device(&[&header]).transact(&[1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("4097 bytes"), "{err}");
    }
}

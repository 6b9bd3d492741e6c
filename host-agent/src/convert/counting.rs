//! A reader that reports how many bytes went through it: for progress of a conversion, in
//! the library's events and in the command line's bar alike.

use std::io::{self, Read};

/// Wraps `inner`, calling `tick` with the size of every read.
#[derive(Debug)]
pub struct CountingReader<R, F> {
    inner: R,
    tick: F,
}

impl<R, F: FnMut(u64)> CountingReader<R, F> {
    /// Counts what is read from `inner`.
    pub fn new(inner: R, tick: F) -> Self {
        Self { inner, tick }
    }
}

impl<R: Read, F: FnMut(u64)> Read for CountingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.tick)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_byte() {
        let mut total = 0;
        let mut out = Vec::new();
        CountingReader::new(&[7u8; 10_000][..], |n| total += n)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!((out.len(), total), (10_000, 10_000));
    }
}

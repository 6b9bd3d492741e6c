//! The tar archive loop: header blocks parsed with the `tar` crate's `Header` (checksum,
//! numeric fields in octal or base-256, ustar prefix), extension records handled here:
//! GNU `L`/`K` long names, PAX `x` records (length-delimited, so binary xattr values with
//! newline bytes survive — the `tar` crate's own `PaxExtensions` splits records at
//! newlines and refuses them), PAX `g` global headers (ignored, as containerd does).

use std::io::{self, BufRead, Read};

use tar::{EntryType, Header};

/// One PAX record.
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// A file entry with its extension records applied.
#[derive(Debug)]
pub struct Entry {
    pub header: Header,
    /// Path: PAX `path`, else GNU long name, else the header's (ustar prefix joined).
    pub path: Vec<u8>,
    /// Link target: PAX `linkpath`, else GNU long link name, else the header's.
    pub link: Vec<u8>,
    /// Content size: PAX `size`, else the header's.
    pub size: u64,
    /// The entry's PAX records (for `uid`, `gid`, `mtime`, xattrs).
    pub pax: Vec<PaxRecord>,
}

/// Why the archive could not be read.
#[derive(Debug)]
pub enum TarError {
    /// The stream itself failed (read or decompression).
    Io(io::Error),
    /// The tar is malformed.
    Format(String),
}

const BLOCK: usize = 512;
/// Extension records bigger than this are refused rather than held in memory.
const MAX_EXTENSION: u64 = 16 << 20;

#[derive(Debug)]
pub struct TarStream<R> {
    inner: R,
    /// Content bytes of the current entry not yet consumed, and its padding.
    remaining: u64,
    padding: u64,
    done: bool,
}

impl<R: BufRead> TarStream<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next file entry, or `None` at the end of the archive. The previous entry's
    /// unread content is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<PaxRecord>> = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !read_block(&mut self.inner, &mut block)? {
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(TarError::Format(
                        "archive ends after an extension header".into(),
                    ));
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let mut header = Header::new_old();
            header.as_mut_bytes().copy_from_slice(&block);
            check_checksum(&header)?;
            let size = header
                .entry_size()
                .map_err(|e| TarError::Format(format!("bad size field: {e}")))?;
            let typ = header.entry_type();
            if typ.is_gnu_longname()
                || typ.is_gnu_longlink()
                || typ.is_pax_local_extensions()
                || typ.is_pax_global_extensions()
            {
                let data = self.read_extension(size)?;
                if typ.is_gnu_longname() {
                    long_name = Some(strip_nul(data));
                } else if typ.is_gnu_longlink() {
                    long_link = Some(strip_nul(data));
                } else if typ.is_pax_local_extensions() {
                    pax.get_or_insert_with(Vec::new).extend(parse_pax(&data)?);
                } else {
                    tracing::debug!("PAX global header ignored");
                }
                continue;
            }
            let pax = pax.unwrap_or_default();
            let find = |key: &[u8]| {
                pax.iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let size = match find(b"size") {
                Some(v) => std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        TarError::Format(format!("bad PAX size {:?}", String::from_utf8_lossy(&v)))
                    })?,
                None => size,
            };
            let path = find(b"path")
                .or(long_name)
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let link = find(b"linkpath").or(long_link).unwrap_or_else(|| {
                header
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default()
            });
            if typ == EntryType::GNUSparse || pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse."))
            {
                return Err(TarError::Format(format!(
                    "entry {:?} is a GNU sparse file, which is not supported",
                    String::from_utf8_lossy(&path)
                )));
            }
            // As Go's archive/tar (containerd) reads it: links, devices, FIFOs and
            // directories are header-only whatever their size field says.
            let header_only = matches!(
                typ,
                EntryType::Link
                    | EntryType::Symlink
                    | EntryType::Char
                    | EntryType::Block
                    | EntryType::Directory
                    | EntryType::Fifo
            );
            let size = if header_only { 0 } else { size };
            self.remaining = size;
            self.padding = size.next_multiple_of(BLOCK as u64) - size;
            return Ok(Some(Entry {
                header,
                path,
                link,
                size,
                pax,
            }));
        }
    }

    /// A reader of the current entry's content.
    pub fn content(&mut self) -> Content<'_, R> {
        Content { stream: self }
    }

    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION {
            return Err(TarError::Format(format!(
                "extension header of {size} bytes is too large"
            )));
        }
        let padded = size.next_multiple_of(BLOCK as u64);
        let mut data = vec![0u8; padded as usize];
        read_exact_or_truncated(&mut self.inner, &mut data)?;
        data.truncate(size as usize);
        Ok(data)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.remaining + self.padding;
        if n > 0 {
            let copied =
                io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(TarError::Io)?;
            if copied < n {
                return Err(TarError::Format(
                    "archive ends inside an entry's content".into(),
                ));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }
}

/// Reads the current entry's content (at most its size).
#[derive(Debug)]
pub struct Content<'a, R> {
    stream: &'a mut TarStream<R>,
}

impl<R: BufRead> BufRead for Content<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let s = &mut *self.stream;
        if s.remaining == 0 {
            return Ok(&[]);
        }
        let limit = usize::try_from(s.remaining).unwrap_or(usize::MAX);
        let avail = s.inner.fill_buf()?;
        Ok(&avail[..avail.len().min(limit)])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(usize::try_from(self.stream.remaining).unwrap_or(usize::MAX));
        self.stream.inner.consume(amt);
        self.stream.remaining -= amt as u64;
    }
}

impl<R: BufRead> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::input::read_buffered(self, buf)
    }
}

fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(i) = v.iter().position(|&b| b == 0) {
        v.truncate(i);
    }
    v
}

fn check_checksum(h: &Header) -> Result<(), TarError> {
    let bytes = h.as_bytes();
    let unsigned: u32 = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    let signed: i64 = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|&b| i64::from(b as i8))
        .sum::<i64>()
        + 8 * 32;
    let stored = h
        .cksum()
        .map_err(|e| TarError::Format(format!("bad header checksum field: {e}")))?;
    if stored != unsigned && i64::from(stored) != signed {
        return Err(TarError::Format(format!(
            "header checksum mismatch (stored {stored}, computed {unsigned}) for {:?}",
            String::from_utf8_lossy(&h.path_bytes())
        )));
    }
    Ok(())
}

/// Reads one block; false at a clean end of stream (no byte read).
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
    let mut got = 0;
    while got < BLOCK {
        match r.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(TarError::Format(format!(
                    "archive ends inside a header ({got} of 512 bytes)"
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TarError::Io(e)),
        }
    }
    Ok(true)
}

fn read_exact_or_truncated(r: &mut impl Read, buf: &mut [u8]) -> Result<(), TarError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Format("archive ends inside an extension header".into())
        } else {
            TarError::Io(e)
        }
    })
}

/// Parses PAX records `"<len> <key>=<value>\n"`, length-delimited (values may hold any byte).
fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord>, TarError> {
    let bad = |why: &str| TarError::Format(format!("malformed PAX record: {why}"));
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("length is not a number"))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad("length does not match the record"));
        }
        let rec = &data[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no `=`"))?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_are_length_delimited() {
        let recs = parse_pax(b"12 a=x\ny\nzz\n8 b=123\n").unwrap();
        assert_eq!(
            recs,
            vec![
                (b"a".to_vec(), b"x\ny\nzz".to_vec()),
                (b"b".to_vec(), b"123".to_vec())
            ]
        );
        assert!(parse_pax(b"99 a=b\n").is_err());
        assert!(parse_pax(b"x a=b\n").is_err());
    }

    #[test]
    fn reads_entries_and_content() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "a/very/".repeat(30) + "long", &b"abc"[..])
            .unwrap();
        let mut h = Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(EntryType::Directory);
        b.append_data(&mut h, "d/", &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut s = TarStream::new(&tar[..]);
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!(e.path, ("a/very/".repeat(30) + "long").into_bytes());
        let mut c = Vec::new();
        s.content().read_to_end(&mut c).unwrap();
        assert_eq!(c, b"abc");
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!(e.path, b"d/");
        assert!(s.next_entry().unwrap().is_none());
        // a flipped byte breaks the checksum
        let mut bad = tar.clone();
        bad[2048 + 10] ^= 1;
        let mut s = TarStream::new(&bad[..]);
        assert!(s.next_entry().is_ok());
        assert!(matches!(s.next_entry(), Err(TarError::Format(m)) if m.contains("checksum")));
    }
}

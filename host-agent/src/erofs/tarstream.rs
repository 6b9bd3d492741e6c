//! The tar archive loop: header blocks parsed with the `tar` crate's `Header` (checksum,
//! numeric fields in octal or base-256, ustar prefix), extension records handled here:
//! GNU `L`/`K` long names, PAX `x` records (length-delimited, so binary xattr values with
//! newline bytes survive — the `tar` crate's own `PaxExtensions` splits records at
//! newlines and refuses them), PAX `g` global headers (ignored, as containerd does).
//!
//! A layer is untrusted input: the extension headers before one entry are held in memory,
//! so their number and total size are capped ([`MAX_EXTENSION_HEADERS`],
//! [`MAX_EXTENSION_BYTES`]) and a repeated PAX key keeps only its last value; content
//! sizes above [`MAX_SIZE`] (2^63 - 1, from a header or PAX `size`) are refused.

use std::collections::HashMap;
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
    /// Byte offset of the content in the archive (always a multiple of 512).
    pub offset: u64,
    /// The entry's PAX records (for `uid`, `gid`, `mtime`, xattrs), one per key (the
    /// last value given).
    pub pax: Vec<PaxRecord>,
}

/// PAX records of one entry in the order their keys first appeared, one per key: a later
/// record for a key (in the same header or a later one) replaces the earlier value.
#[derive(Debug, Default)]
struct PaxRecords {
    records: Vec<PaxRecord>,
    index: HashMap<Vec<u8>, usize>,
}

impl PaxRecords {
    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        match self.index.get(&key) {
            Some(&i) => self.records[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.records.len());
                self.records.push((key, value));
            }
        }
    }
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
/// Largest content size accepted, from a header field or a PAX `size` record: Go's
/// archive/tar (containerd's reader) refuses sizes that do not fit in an `i64`.
pub const MAX_SIZE: u64 = i64::MAX as u64;
/// Extension data (PAX `x` and `g`, GNU `L` and `K` contents together) allowed before one
/// entry: 1 MiB, the limit Go's archive/tar puts on each PAX header and GNU long name.
/// Everything before an entry is held in memory until the entry comes.
pub const MAX_EXTENSION_BYTES: u64 = 1 << 20;
/// Extension headers allowed before one entry (a tar writer emits at most one of each
/// kind; a crafted layer could chain them without end).
pub const MAX_EXTENSION_HEADERS: u32 = 64;

#[derive(Debug)]
pub struct TarStream<R> {
    inner: R,
    /// Content bytes of the current entry not yet consumed, and its padding.
    remaining: u64,
    padding: u64,
    done: bool,
    /// Bytes of the archive consumed.
    pos: u64,
}

impl<R: BufRead> TarStream<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            remaining: 0,
            padding: 0,
            done: false,
            pos: 0,
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
        let mut pax: Option<PaxRecords> = None;
        let mut ext_headers = 0u32;
        let mut ext_bytes = 0u64;
        loop {
            let mut block = [0u8; BLOCK];
            let read = read_block(&mut self.inner, &mut block)?;
            if read {
                self.pos += BLOCK as u64;
            }
            if !read {
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
            let size = header_size(&header)?;
            let typ = header.entry_type();
            if typ.is_gnu_longname()
                || typ.is_gnu_longlink()
                || typ.is_pax_local_extensions()
                || typ.is_pax_global_extensions()
            {
                ext_headers += 1;
                if ext_headers > MAX_EXTENSION_HEADERS {
                    return Err(TarError::Format(format!(
                        "more than {MAX_EXTENSION_HEADERS} extension headers (PAX or GNU \
                         long name) before one entry"
                    )));
                }
                ext_bytes = ext_bytes.saturating_add(size);
                if ext_bytes > MAX_EXTENSION_BYTES {
                    return Err(TarError::Format(format!(
                        "extension headers (PAX or GNU long name) before one entry hold \
                         {ext_bytes} bytes, more than the limit of {MAX_EXTENSION_BYTES}"
                    )));
                }
                let data = self.read_extension(size)?;
                if typ.is_gnu_longname() {
                    long_name = Some(strip_nul(data));
                } else if typ.is_gnu_longlink() {
                    long_link = Some(strip_nul(data));
                } else if typ.is_pax_local_extensions() {
                    let records = pax.get_or_insert_with(PaxRecords::default);
                    for (k, v) in parse_pax(&data)? {
                        records.set(k, v);
                    }
                } else {
                    tracing::debug!("PAX global header ignored");
                }
                continue;
            }
            let pax = pax.map(|p| p.records).unwrap_or_default();
            let find = |key: &[u8]| pax.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let size = match find(b"size") {
                Some(v) => pax_size(&v)?,
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
            // A PAX or base-256 size may be anything up to u64::MAX; padded, it must fit.
            // (Found by the tar_convert fuzz target.)
            let Some(padded) = size.checked_next_multiple_of(BLOCK as u64) else {
                return Err(TarError::Format(format!(
                    "entry {:?} claims {size} bytes",
                    String::from_utf8_lossy(&path)
                )));
            };
            self.remaining = size;
            self.padding = padded - size;
            return Ok(Some(Entry {
                header,
                path,
                link,
                size,
                offset: self.pos,
                pax,
            }));
        }
    }

    /// A reader of the current entry's content.
    pub fn content(&mut self) -> Content<'_, R> {
        Content { stream: self }
    }

    /// Reads an extension header's content; its size was checked against
    /// [`MAX_EXTENSION_BYTES`].
    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let padded = size.next_multiple_of(BLOCK as u64);
        let mut data = vec![0u8; padded as usize];
        read_exact_or_truncated(&mut self.inner, &mut data)?;
        self.pos += padded;
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
            self.pos += n;
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
        self.stream.pos += amt as u64;
    }
}

impl<R: BufRead> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::input::read_buffered(self, buf)
    }
}

/// The header's size field (octal, or base-256 when its first byte has the high bit set),
/// at most [`MAX_SIZE`]. The `tar` crate reads base-256 fields into a `u64` dropping the
/// high bits, so those are checked here; a negative base-256 value is refused, as Go
/// refuses it.
fn header_size(header: &Header) -> Result<u64, TarError> {
    let field = &header.as_old().size;
    if field[0] & 0x80 != 0 {
        // 0x80 then 11 bytes big-endian (0xff would mark a negative value)
        let too_large = || {
            TarError::Format(format!(
                "size field (base-256 {}) is negative or larger than 2^63 - 1",
                hex_bytes(field)
            ))
        };
        if field[0] != 0x80 {
            return Err(too_large());
        }
        let mut value: u64 = 0;
        for &b in &field[1..] {
            if value > MAX_SIZE >> 8 {
                return Err(too_large());
            }
            value = (value << 8) | u64::from(b);
        }
        return Ok(value);
    }
    let size = header
        .entry_size()
        .map_err(|e| TarError::Format(format!("bad size field: {e}")))?;
    check_size(size, "size field")
}

/// A PAX `size` record: decimal, at most [`MAX_SIZE`].
fn pax_size(v: &[u8]) -> Result<u64, TarError> {
    let size = std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            TarError::Format(format!(
                "bad PAX size {:?}: not a number or larger than 2^63 - 1",
                String::from_utf8_lossy(v)
            ))
        })?;
    check_size(size, "PAX size")
}

fn check_size(size: u64, what: &str) -> Result<u64, TarError> {
    if size > MAX_SIZE {
        return Err(TarError::Format(format!(
            "{what} {size} is larger than 2^63 - 1"
        )));
    }
    Ok(size)
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
        // a size whose padding overflows u64 is an error, not a panic (refused as larger
        // than i64::MAX before any padding is computed)
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"18446744073709551615"[..])])
            .unwrap();
        let mut h = Header::new_gnu();
        h.set_size(0);
        b.append_data(&mut h, "f", &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut s = TarStream::new(&tar[..]);
        assert!(matches!(s.next_entry(), Err(TarError::Format(_))));
        assert!(parse_pax(b"x a=b\n").is_err());
    }

    /// A header of type `typ` with `data` as content, padded.
    fn member(typ: u8, name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::new(typ));
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
        out
    }

    fn pax_rec(key: &str, value: &str) -> Vec<u8> {
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        format!("{len} {key}={value}\n").into_bytes()
    }

    fn first_entry(tar: &[u8]) -> Result<Option<Entry>, TarError> {
        TarStream::new(tar).next_entry()
    }

    fn format_error(r: Result<Option<Entry>, TarError>) -> String {
        match r {
            Err(TarError::Format(m)) => m,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn a_repeated_pax_key_keeps_its_last_value() {
        let mut tar = Vec::new();
        let mut first = pax_rec("path", "one");
        first.extend(pax_rec("uid", "5"));
        first.extend(pax_rec("path", "two"));
        tar.extend(member(b'x', "h1", &first));
        tar.extend(member(b'x', "h2", &pax_rec("path", "three")));
        tar.extend(member(b'0', "f", b"abc"));
        let e = first_entry(&tar).unwrap().unwrap();
        assert_eq!(e.path, b"three");
        assert_eq!(
            e.pax,
            vec![
                (b"path".to_vec(), b"three".to_vec()),
                (b"uid".to_vec(), b"5".to_vec())
            ]
        );
    }

    #[test]
    fn extension_headers_before_an_entry_are_capped_in_number() {
        let one = member(b'x', "h", &pax_rec("comment", "c"));
        let mut ok = one.repeat(MAX_EXTENSION_HEADERS as usize);
        ok.extend(member(b'0', "f", b""));
        assert!(first_entry(&ok).unwrap().is_some());
        let rec = pax_rec("comment", "c");
        for (typ, data) in [
            (b'x', &rec[..]),
            (b'g', &rec),
            (b'L', b"a\0"),
            (b'K', b"a\0"),
        ] {
            let mut tar = member(typ, "h", data).repeat(MAX_EXTENSION_HEADERS as usize + 1);
            tar.extend(member(b'0', "f", b""));
            let m = format_error(first_entry(&tar));
            assert!(m.contains("more than 64 extension headers"), "{m}");
        }
    }

    #[test]
    fn extension_data_before_an_entry_is_capped_in_size() {
        let big = pax_rec("comment", &"a".repeat(600_000));
        let mut tar = member(b'x', "h", &big);
        tar.extend(member(b'0', "f", b""));
        assert!(first_entry(&tar).unwrap().is_some());
        // two of them, whatever their kinds, exceed 1 MiB
        for second in [b'x', b'g', b'L', b'K'] {
            let mut tar = member(b'x', "h", &big);
            tar.extend(member(second, "h", &big));
            tar.extend(member(b'0', "f", b""));
            let m = format_error(first_entry(&tar));
            assert!(m.contains("more than the limit of 1048576"), "{m}");
        }
        // one header alone over the limit is refused before its content is read
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(u64::from(u32::MAX));
        h.set_cksum();
        let m = format_error(first_entry(h.as_bytes()));
        assert!(m.contains("4294967295 bytes"), "{m}");
    }

    #[test]
    fn sizes_above_i64_max_are_refused() {
        // base-256 size fields
        let field = |bytes: [u8; 12]| {
            let mut t = member(b'0', "f", b"");
            t[124..136].copy_from_slice(&bytes);
            let mut h = Header::new_old();
            h.as_mut_bytes().copy_from_slice(&t[..BLOCK]);
            h.set_cksum();
            t[..BLOCK].copy_from_slice(h.as_bytes());
            t
        };
        let mut max = [0u8; 12];
        max[0] = 0x80;
        max[4..].copy_from_slice(&(i64::MAX as u64).to_be_bytes());
        let t = field(max);
        assert_eq!(first_entry(&t).unwrap().unwrap().size, i64::MAX as u64);
        let mut over = max;
        over[4..].copy_from_slice(&(1u64 << 63).to_be_bytes());
        let mut wide = [0u8; 12];
        wide[0] = 0x80;
        wide[3] = 1;
        let negative = [0xff; 12];
        for bytes in [over, wide, negative] {
            let m = format_error(first_entry(&field(bytes)));
            assert!(m.contains("larger than 2^63 - 1"), "{m}");
        }
        // PAX size records
        for v in [
            "9223372036854775808",
            "18446744073709551615",
            "-1",
            "99999999999999999999",
        ] {
            let mut t = member(b'x', "h", &pax_rec("size", v));
            t.extend(member(b'0', "f", b""));
            let m = format_error(first_entry(&t));
            assert!(m.contains("larger than 2^63 - 1"), "{v}: {m}");
        }
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

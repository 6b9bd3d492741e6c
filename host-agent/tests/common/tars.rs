//! Building test tars entry by entry: GNU headers (long names through `L`/`K` records),
//! PAX records (`x` headers) for xattrs, mtimes, paths and sizes.

use tar::{EntryType, Header};

pub struct Tar {
    b: tar::Builder<Vec<u8>>,
    /// Default mtime of entries.
    pub mtime: u64,
}

/// One PAX record `"<len> key=value\n"`.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
            mtime: 1_700_000_000,
        }
    }

    fn header(&self, typ: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(typ);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_path("PaxHeaders.0/entry").unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, &data[..]).unwrap();
        self
    }

    /// Any entry, with owner and mode.
    pub fn entry(
        &mut self,
        typ: EntryType,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = self.header(typ, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        if path.len() < 100 {
            // raw, so that `./` and `/abs` reach the converter as written
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.b.append(&h, data).unwrap();
        } else {
            self.b.append_data(&mut h, path, data).unwrap();
        }
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, path, mode, 0, 0, data)
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.entry(EntryType::Directory, path, mode, 0, 0, b"")
    }

    fn link_entry(&mut self, typ: EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(typ, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link_entry(EntryType::Symlink, path, target)
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link_entry(EntryType::Link, path, target)
    }

    pub fn device(&mut self, typ: EntryType, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = self.header(typ, 0o640, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &b""[..]).unwrap();
        self
    }

    /// An entry whose name is written raw into the header (for names `append_data`
    /// refuses, such as `..`).
    pub fn raw_name(&mut self, typeflag: u8, name: &[u8], data: &[u8]) -> &mut Self {
        let mut h = self.header(EntryType::Regular, 0o644, data.len() as u64);
        h.as_old_mut().linkflag[0] = typeflag;
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

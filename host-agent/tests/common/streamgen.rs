//! Tar streams generated on the fly (never held in memory): for layers too large to
//! build as a `Vec`.

use std::io::{self, Read};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// One member of a generated stream: name, content length, and a seed for its bytes.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub len: u64,
    pub seed: u64,
    /// Put the size in a PAX `size` record and 0 in the header (as Go's archive/tar does
    /// for sizes the header cannot hold).
    pub pax_size: bool,
}

/// A tar stream of regular files whose contents are a cheap function of (seed, offset).
pub struct GenTar {
    members: std::vec::IntoIter<Member>,
    /// Bytes ready to hand out (headers, padding).
    pending: Vec<u8>,
    pending_pos: usize,
    /// Content of the current member still to produce.
    content_left: u64,
    content_off: u64,
    seed: u64,
    padding: u64,
    hasher: Option<Sha256>,
    /// sha256 of each member's content, in order, filled as the stream is read.
    pub digests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    finished: bool,
}

impl GenTar {
    pub fn new(members: Vec<Member>) -> Self {
        Self {
            members: members.into_iter(),
            pending: Vec::new(),
            pending_pos: 0,
            content_left: 0,
            content_off: 0,
            seed: 0,
            padding: 0,
            hasher: None,
            digests: Default::default(),
            finished: false,
        }
    }

    fn start_next(&mut self) {
        self.pending.clear();
        self.pending_pos = 0;
        let Some(m) = self.members.next() else {
            if !self.finished {
                self.pending.extend_from_slice(&[0u8; 1024]);
                self.finished = true;
            }
            return;
        };
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_path(&m.name).unwrap();
        if m.pax_size {
            let rec = format!(" size={}\n", m.len);
            let mut len = rec.len() + 2;
            while len != rec.len() + len.to_string().len() {
                len = rec.len() + len.to_string().len();
            }
            let data = format!("{len}{rec}").into_bytes();
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            x.set_path("PaxHeaders/big").unwrap();
            x.set_size(data.len() as u64);
            x.set_cksum();
            self.pending.extend_from_slice(x.as_bytes());
            self.pending.extend_from_slice(&data);
            self.pending
                .resize(self.pending.len().next_multiple_of(512), 0);
            h.set_size(0);
        } else {
            h.set_size(m.len);
        }
        h.set_cksum();
        self.pending.extend_from_slice(h.as_bytes());
        self.content_left = m.len;
        self.content_off = 0;
        self.seed = m.seed;
        self.padding = m.len.next_multiple_of(512) - m.len;
        self.hasher = Some(Sha256::new());
    }
}

/// The content byte at `off` of a member with `seed`.
fn fill(seed: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (off + i as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x ^ (x >> 9) ^ (x >> 17)) as u8;
    }
}

impl Read for GenTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pending_pos < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.pending_pos);
                buf[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
                self.pending_pos += n;
                return Ok(n);
            }
            if self.content_left > 0 {
                let n = buf
                    .len()
                    .min(usize::try_from(self.content_left).unwrap_or(usize::MAX))
                    .min(1 << 16);
                fill(self.seed, self.content_off, &mut buf[..n]);
                if let Some(h) = &mut self.hasher {
                    h.update(&buf[..n]);
                }
                self.content_left -= n as u64;
                self.content_off += n as u64;
                return Ok(n);
            }
            if let Some(h) = self.hasher.take() {
                self.digests.lock().unwrap().push(hex::encode(h.finalize()));
                self.pending = vec![0u8; self.padding as usize];
                self.pending_pos = 0;
                self.padding = 0;
                continue;
            }
            if self.finished && self.pending_pos >= self.pending.len() {
                return Ok(0);
            }
            self.start_next();
        }
    }
}

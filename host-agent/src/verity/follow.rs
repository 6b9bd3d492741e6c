//! Hashing a file's data blocks on a helper thread while another thread is still writing
//! it: the writer reports how far the file is written, the follower reads those blocks
//! back from the page cache, records their digests and starts their writeback, so that
//! neither the hashing nor the final sync waits for the end of the writing.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use super::error::VerityError;
use super::leaves::LeafDigests;
use super::params::VerityParams;

/// Bytes read back and hashed at a time.
const CHUNK: usize = 1 << 20;

#[derive(Debug)]
enum Msg {
    /// Every block before this one is written.
    Written(u64),
    /// Nothing more will be written: hash what is left and return.
    Finish,
    /// Stop now.
    Abort,
}

/// A thread hashing the blocks of a file as they are written. Dropping it stops the thread
/// and waits for it.
#[derive(Debug)]
pub struct Follower {
    tx: mpsc::Sender<Msg>,
    handle: Option<thread::JoinHandle<Result<LeafDigests, VerityError>>>,
}

/// Reports progress to a [`Follower`] from the writing side.
#[derive(Debug, Clone)]
pub struct WrittenReporter(mpsc::Sender<Msg>);

impl WrittenReporter {
    /// Reports that every block before `end` is written.
    pub fn written(&self, end: u64) {
        // A thread that stopped early reports its error from `finish`.
        let _ = self.0.send(Msg::Written(end));
    }
}

impl Follower {
    /// Starts following `file` (read through its own descriptor) from data block `first`.
    /// The digests are kept in an anonymous file next to `path`.
    ///
    /// # Errors
    /// Invalid parameters, or the thread cannot be started.
    pub fn start(
        file: File,
        path: &Path,
        params: VerityParams,
        first: u64,
    ) -> Result<Self, VerityError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let leaves = LeafDigests::spilled(params, dir)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let path = path.to_owned();
        let handle = thread::Builder::new()
            .name("verity-leaves".into())
            .spawn(move || follow(&file, &path, leaves, first, &rx))
            .map_err(VerityError::io("start the hashing thread for", "the image"))?;
        Ok(Self {
            tx,
            handle: Some(handle),
        })
    }

    /// A handle for the writer to report progress with.
    pub fn reporter(&self) -> WrittenReporter {
        WrittenReporter(self.tx.clone())
    }

    /// Hashes the blocks before `end` that are not hashed yet and returns the digests of
    /// blocks `first..end`.
    ///
    /// # Errors
    /// Reading the file failed, or the thread failed.
    pub fn finish(mut self, end: u64) -> Result<LeafDigests, VerityError> {
        let _ = self.tx.send(Msg::Written(end));
        let _ = self.tx.send(Msg::Finish);
        match self.handle.take().map(thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(VerityError::Leaves("the hashing thread failed".into())),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.tx.send(Msg::Abort);
            let _ = h.join();
        }
    }
}

fn follow(
    file: &File,
    path: &PathBuf,
    mut leaves: LeafDigests,
    first: u64,
    rx: &mpsc::Receiver<Msg>,
) -> Result<LeafDigests, VerityError> {
    let aborted = || VerityError::Leaves("hashing was stopped before the end".into());
    let bs = leaves.params().data_block_size as usize;
    let chunk_blocks = (CHUNK / bs).max(1);
    let mut buf = vec![0u8; chunk_blocks * bs];
    let (mut done, mut end, mut finishing) = (first, first, false);
    loop {
        // wait only when there is nothing to hash
        let next = if done < end || finishing {
            rx.try_recv().ok()
        } else {
            Some(rx.recv().map_err(|_| aborted())?)
        };
        match next {
            Some(Msg::Written(e)) => {
                end = end.max(e);
                continue;
            }
            Some(Msg::Finish) => {
                finishing = true;
                continue;
            }
            Some(Msg::Abort) => return Err(aborted()),
            None => {}
        }
        if done >= end {
            // finishing and everything hashed
            return Ok(leaves);
        }
        let n = (end - done).min(chunk_blocks as u64);
        let len = n as usize * bs;
        let offset = done * bs as u64;
        file.read_exact_at(&mut buf[..len], offset)
            .map_err(VerityError::io("read back", path))?;
        leaves.record_here(done, &buf[..len])?;
        crate::fshint::start_writeback(file, offset, len as u64);
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::verity::FormatOptions;

    fn blocks(n: usize, seed: u8) -> Vec<u8> {
        (0..n * 4096)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
            .collect()
    }

    fn growing_file(dir: &Path) -> (File, PathBuf) {
        let path = dir.join("img");
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (f, path)
    }

    #[test]
    fn digests_follow_the_writer_and_equal_recording_all_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, path) = growing_file(dir.path());
        let params = FormatOptions::containerd().params;
        let f = Follower::start(File::open(&path).unwrap(), &path, params.clone(), 1).unwrap();
        let reporter = f.reporter();
        let mut all = Vec::new();
        // uneven pieces, some reported twice or out of order, one over several chunks
        for (i, n) in [1usize, 3, 700, 2, 1, 300].into_iter().enumerate() {
            let piece = blocks(n, i as u8);
            w.write_all(&piece).unwrap();
            all.extend_from_slice(&piece);
            let end = all.len() as u64 / 4096;
            reporter.written(end);
            reporter.written(end - 1);
        }
        let more = blocks(5, 99);
        w.write_all(&more).unwrap();
        all.extend_from_slice(&more);
        let mut got = f.finish(all.len() as u64 / 4096).unwrap();
        assert_eq!(got.blocks(), all.len() as u64 / 4096);
        got.record(0, &all[..4096]).unwrap();

        let mut want = LeafDigests::new(params.clone()).unwrap();
        want.record(0, &all).unwrap();
        let n = all.len() / 4096;
        let (mut a, mut b) = (vec![0u8; n * 32], vec![0u8; n * 32]);
        got.read(0, &mut a).unwrap();
        want.read(0, &mut b).unwrap();
        assert!(a == b, "digests differ");
        got.check(&params, n as u64).unwrap();
    }

    fn follow_from_0(path: &Path) -> Follower {
        let params = FormatOptions::containerd().params;
        Follower::start(File::open(path).unwrap(), path, params, 0).unwrap()
    }

    #[test]
    fn a_block_reported_but_missing_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, path) = growing_file(dir.path());
        w.write_all(&blocks(2, 1)).unwrap();
        let f = follow_from_0(&path);
        let err = f.finish(3).unwrap_err();
        assert!(
            matches!(&err, VerityError::Io { op: "read back", path: p, .. } if *p == path),
            "{err}"
        );
    }

    #[test]
    fn dropping_a_follower_stops_its_thread_even_with_reporters_alive() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, path) = growing_file(dir.path());
        w.write_all(&blocks(600, 2)).unwrap();
        let f = follow_from_0(&path);
        let reporter = f.reporter();
        reporter.written(600);
        drop(f); // joins the thread: returns only because Abort is honoured
        reporter.written(601); // to a stopped thread: ignored
    }
}

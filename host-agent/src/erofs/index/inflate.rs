//! A compressed layer is decompressed on a thread of its own (as the full writer does), so
//! that inflating, parsing and hashing run side by side.

use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;

use crate::erofs::error::ErofsError;

/// Bytes decompressed at a time.
const CHUNK: usize = 1 << 20;
/// Chunks in flight.
const QUEUE: usize = 4;

/// Reads what the decompressing thread produced.
pub struct Threaded {
    rx: Option<mpsc::Receiver<io::Result<Vec<u8>>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    handle: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Threaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threaded")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Starts decompressing `reader` on a thread; the result reads the same bytes.
pub fn threaded(mut reader: Box<dyn Read + Send>) -> Result<Threaded, ErofsError> {
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(QUEUE);
    let handle = thread::Builder::new()
        .name("layer-inflate".into())
        .spawn(move || {
            loop {
                let mut chunk = vec![0u8; CHUNK];
                let mut n = 0;
                let result = loop {
                    if n == CHUNK {
                        break Ok(());
                    }
                    match reader.read(&mut chunk[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(n);
                let last = n == 0;
                let sent = match result {
                    Ok(()) => tx.send(Ok(chunk)),
                    Err(e) => {
                        if n > 0 {
                            let _ = tx.send(Ok(chunk));
                        }
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // an empty chunk is the end; a closed channel means the reader stopped
                if last || sent.is_err() {
                    return;
                }
            }
        })
        .map_err(ErofsError::io(
            "start the decompressing thread for",
            "the layer",
        ))?;
    Ok(Threaded {
        rx: Some(rx),
        cur: Vec::new(),
        pos: 0,
        done: false,
        handle: Some(handle),
    })
}

impl Read for Threaded {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            let next = self.rx.as_ref().map(mpsc::Receiver::recv);
            match next {
                Some(Ok(Ok(chunk))) => {
                    self.done = chunk.is_empty();
                    self.cur = chunk;
                    self.pos = 0;
                }
                Some(Ok(Err(e))) => {
                    self.done = true;
                    return Err(e);
                }
                _ => {
                    self.done = true;
                    return Err(io::Error::other("the decompressing thread stopped"));
                }
            }
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for Threaded {
    fn drop(&mut self) {
        // closing the channel stops the thread at its next chunk
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

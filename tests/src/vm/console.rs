//! Capture of a VM's serial console (QEMU's stdout) and QEMU's stderr, with waiting for
//! markers.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

#[derive(Debug, Default)]
struct State {
    text: String,
    /// Readers still open; 0 once QEMU closed both stdout and stderr (it exited).
    open: usize,
}

/// Text captured from a VM, shared with the reader threads.
#[derive(Debug, Clone, Default)]
pub struct Console {
    inner: Arc<(Mutex<State>, Condvar)>,
    echo: bool,
}

impl Console {
    /// A capture; with `echo` every line is also printed to stderr as it arrives
    /// (`LAYERPASS_VM_CONSOLE=1`).
    pub fn new(echo: bool) -> Self {
        Self {
            inner: Arc::default(),
            echo,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a thread appending `source` to the capture, each line prefixed with `prefix`.
    pub fn capture(
        &self,
        source: impl Read + Send + 'static,
        prefix: &'static str,
    ) -> JoinHandle<()> {
        self.state().open += 1;
        let me = self.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(source);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).replace('\r', "");
                        if me.echo {
                            eprint!("{prefix}{text}");
                        }
                        let mut state = me.state();
                        state.text.push_str(prefix);
                        state.text.push_str(&text);
                        drop(state);
                        me.inner.1.notify_all();
                    }
                }
            }
            me.state().open -= 1;
            me.inner.1.notify_all();
        })
    }

    /// Everything captured so far (`\r` removed).
    pub fn text(&self) -> String {
        self.state().text.clone()
    }

    /// Waits until `marker` appears at or after byte `from` of the text; returns the byte
    /// offset just past it. Fails when QEMU has exited without printing it or after
    /// `timeout`.
    pub fn wait_for(&self, marker: &str, from: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if let Some(pos) = state.text.get(from..).and_then(|t| t.find(marker)) {
                return Ok(from + pos + marker.len());
            }
            if state.open == 0 {
                bail!("the VM exited without printing {marker:?}");
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("no {marker:?} on the VM console after {timeout:?}");
            }
            state = self
                .inner
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until QEMU has closed its output (it exited), up to `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        while state.open > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .inner
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

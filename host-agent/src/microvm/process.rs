//! A QEMU process that never outlives its owner: its own process group, `SIGKILL` when the
//! thread that started it exits (`PR_SET_PDEATHSIG`), the serial console captured, and
//! the whole group killed and reaped on drop.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::VmError;

/// Text the VM printed (console and QEMU's stderr), shared with the reader threads.
#[derive(Debug, Default)]
struct Captured {
    text: Mutex<(String, bool)>,
    changed: Condvar,
}

/// A running VM process.
#[derive(Debug)]
pub struct VmProcess {
    child: Child,
    captured: Arc<Captured>,
    readers: Vec<JoinHandle<()>>,
}

impl VmProcess {
    /// Spawns `cmd` (stdin closed, stdout and stderr captured; with `echo` each console
    /// line is also logged at debug level).
    pub fn spawn(cmd: &mut Command) -> Result<Self, VmError> {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| VmError::Command {
            command: cmd.get_program().to_string_lossy().into_owned(),
            detail: format!("cannot start: {e}"),
        })?;
        let captured = Arc::new(Captured::default());
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(capture(out, "", captured.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(capture(err, "qemu: ", captured.clone()));
        }
        Ok(Self {
            child,
            captured,
            readers,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    fn text(&self) -> MutexGuard<'_, (String, bool)> {
        self.captured
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything printed so far.
    pub fn console(&self) -> String {
        self.text().0.clone()
    }

    /// The last `n` lines printed.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until `marker` appears in the output; false on timeout or when the VM's
    /// output ended first.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.text();
        loop {
            if guard.0.contains(marker) {
                return true;
            }
            let now = Instant::now();
            if guard.1 || now >= deadline {
                return false;
            }
            guard = self
                .captured
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The exit status if QEMU has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError> {
        self.child.try_wait().map_err(|e| VmError::Command {
            command: "qemu".into(),
            detail: format!("cannot check whether it exited: {e}"),
        })
    }

    /// Waits for QEMU to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process group and reaps QEMU.
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our child's process group; no memory is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn capture(
    stream: impl Read + Send + 'static,
    prefix: &'static str,
    into: Arc<Captured>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    tracing::debug!(target: "layerpass::vm::console", "{prefix}{}", text.trim_end());
                    let mut guard = into.text.lock().unwrap_or_else(PoisonError::into_inner);
                    guard.0.push_str(prefix);
                    guard.0.push_str(&text.replace('\r', ""));
                    if !text.ends_with('\n') {
                        guard.0.push('\n');
                    }
                    into.changed.notify_all();
                }
            }
        }
        let mut guard = into.text.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1 = true;
        into.changed.notify_all();
    })
}

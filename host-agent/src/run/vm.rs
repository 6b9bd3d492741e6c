//! Booting the run's microVM: QEMU with the exported disks over vhost-user-blk and three
//! virtio-serial ports (status, stdout, stderr) whose host ends are connected before the
//! guest can write, then pumped: the command's output goes to the terminal as it comes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::RunError;
use super::status::{self, STATUS_PORT, STDERR_PORT, STDOUT_PORT, StatusEvent};
use crate::microvm::VmProcess;
use crate::microvm::qemu::{self, Machine};

/// How long QEMU may take to create its port sockets.
const PORT_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest status line accepted (a MountResponse of 128 layers fits many times).
const MAX_STATUS_LINE: u64 = 1 << 20;

/// What the status port said, or that it closed.
#[derive(Debug)]
pub enum StatusMsg {
    /// One event.
    Event(StatusEvent),
    /// A line that is not an event (the run fails: the guest is not ours).
    Bad(String),
    /// The port closed (QEMU exited).
    Closed,
}

/// A booted VM.
#[derive(Debug)]
pub struct RunningVm {
    /// QEMU (killed on drop).
    pub process: VmProcess,
    /// When QEMU was started.
    pub started: Instant,
    /// Status events in order.
    pub status: Receiver<StatusMsg>,
    pumps: Vec<JoinHandle<()>>,
}

impl RunningVm {
    /// Waits for the output pumps to drain (they end when QEMU closes the ports).
    pub fn drain_output(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pumps.iter().any(|p| !p.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for p in self.pumps.drain(..) {
            if p.is_finished() {
                let _ = p.join();
            }
        }
    }
}

/// The sockets of the disks to attach and how many queues each gets.
#[derive(Debug, Clone)]
pub struct Disks {
    /// vhost-user-blk backend sockets, in attach order.
    pub sockets: Vec<PathBuf>,
    /// `num-queues` of each.
    pub queues: u16,
}

/// Starts QEMU and connects the ports; `stdout`/`stderr` receive the command's output.
pub fn boot(
    qemu_bin: &Path,
    machine: &Machine,
    disks: &Disks,
    dir: &Path,
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
) -> Result<RunningVm, RunError> {
    let mut cmd = machine.command(qemu_bin);
    for (i, s) in disks.sockets.iter().enumerate() {
        qemu::vhost_user_blk(&mut cmd, i, s, Some(disks.queues), None);
    }
    qemu::serial_controller(&mut cmd);
    let ports = [STATUS_PORT, STDOUT_PORT, STDERR_PORT];
    for (i, name) in ports.iter().enumerate() {
        qemu::serial_port(&mut cmd, i, name, &port_socket(dir, name));
    }
    let started = Instant::now();
    let mut process = VmProcess::spawn(&mut cmd)?;
    let mut streams = Vec::new();
    for name in ports {
        streams.push(connect(&mut process, &port_socket(dir, name))?);
    }
    let [status_stream, out_stream, err_stream]: [UnixStream; 3] = streams
        .try_into()
        .map_err(|_| RunError::Boot("port streams".into()))?;
    let (tx, rx) = mpsc::channel();
    let pumps = vec![
        std::thread::spawn(move || read_status(status_stream, &tx)),
        std::thread::spawn(move || pump(out_stream, stdout)),
        std::thread::spawn(move || pump(err_stream, stderr)),
    ];
    Ok(RunningVm {
        process,
        started,
        status: rx,
        pumps,
    })
}

/// The host end of port `name`.
fn port_socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

fn connect(process: &mut VmProcess, path: &Path) -> Result<UnixStream, RunError> {
    let deadline = Instant::now() + PORT_TIMEOUT;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if let Some(status) = process.try_wait()? {
                    return Err(RunError::Boot(format!(
                        "QEMU exited ({status}) before opening its ports:\n{}",
                        process.console_tail(20)
                    )));
                }
                if Instant::now() >= deadline {
                    return Err(RunError::Boot(format!(
                        "cannot connect to {}: {e}",
                        path.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn pump(mut from: UnixStream, mut to: Box<dyn Write + Send>) {
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    // Our reader went away (a closed pipe): keep draining so the guest
                    // never blocks on a full port.
                    continue;
                }
            }
        }
    }
}

fn read_status(stream: UnixStream, tx: &Sender<StatusMsg>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader
            .by_ref()
            .take(MAX_STATUS_LINE)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    let _ = tx.send(StatusMsg::Bad(format!(
                        "a status line over {MAX_STATUS_LINE} bytes or cut short"
                    )));
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let msg = match status::parse(text.trim_end()) {
                    Ok(e) => StatusMsg::Event(e),
                    Err(e) => StatusMsg::Bad(e),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(StatusMsg::Closed);
}

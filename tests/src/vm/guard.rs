//! [`VmGuard`]: a running QEMU guest that is killed, reaped and has its console saved (and
//! printed if the test is failing) when dropped.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::accel::Accel;
use super::assets::workspace_root;
use super::console::Console;
use super::initramfs::RESULT_MARKER;
use super::process::ChildGuard;
use super::qemu::{VhostUserBlk, port_socket, qmp_socket};
use super::qmp::Qmp;

/// A running VM. Dropping it kills QEMU's process group and reaps it, writes the console
/// to `target/vm-logs/<name>.log`, and prints the console if the thread is panicking.
#[derive(Debug)]
pub struct VmGuard {
    pub(super) name: String,
    pub(super) process: ChildGuard,
    pub(super) console: Console,
    pub(super) readers: Vec<JoinHandle<()>>,
    pub(super) dir: TempDir,
    pub(super) ports: Vec<String>,
    pub(super) accel: Accel,
    pub(super) cursor: usize,
    pub(super) started: Instant,
    /// Free `pcie-root-port`s for hot-plugging (`hp0`, `hp1`, …): next index and count.
    pub(super) hotplug: (usize, usize),
    pub(super) qmp: Option<Qmp>,
}

impl VmGuard {
    /// The accelerator this VM runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The console text so far (serial output; QEMU's stderr lines start with `qemu: `).
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// Waits for `marker` on the console after the previous match (each call moves past
    /// what it matched, so a repeated marker can be awaited again). Fails if QEMU exits
    /// first or after `timeout` (which only guards against hangs).
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        self.cursor = self
            .console
            .wait_for(marker, self.cursor, timeout)
            .with_context(|| format!("VM {}", self.name))?;
        Ok(())
    }

    /// Waits for a console line starting with `prefix` (after the previous match) and
    /// returns the rest of that line, trimmed.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        loop {
            self.wait_for(prefix, timeout)?;
            let text = self.console.text();
            let start = self.cursor - prefix.len();
            if start == 0 || text.as_bytes().get(start - 1) == Some(&b'\n') {
                let rest = text.get(self.cursor..).unwrap_or_default();
                return Ok(rest.lines().next().unwrap_or_default().trim().to_owned());
            }
        }
    }

    /// Waits for the default init's result line: `Ok` for `PASS`, an error for `FAIL`.
    pub fn wait_result(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for(RESULT_MARKER, timeout)?;
        let text = self.console.text();
        let rest = text.get(self.cursor..).unwrap_or_default();
        let verdict = rest.lines().next().unwrap_or_default().trim().to_owned();
        if verdict == "PASS" {
            Ok(())
        } else {
            bail!("the guest test of VM {} failed: {verdict}", self.name)
        }
    }

    /// The lines of console output that start with `prefix`, prefix removed, trimmed.
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.console
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// QEMU's exit status if it has exited (without waiting).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        self.process.try_wait()
    }

    /// Waits for QEMU to exit by itself (the guest powered off) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match self.process.wait_timeout(timeout)? {
            Some(status) => Ok(status),
            None => bail!("VM {} still running after {timeout:?}", self.name),
        }
    }

    /// The host socket of virtio-serial port `name`.
    pub fn port_path(&self, name: &str) -> PathBuf {
        port_socket(self.dir.path(), name)
    }

    /// Connects to virtio-serial port `name` (QEMU listens on its socket), retrying while
    /// QEMU starts, up to `timeout`.
    pub fn connect_port(&mut self, name: &str, timeout: Duration) -> Result<UnixStream> {
        if !self.ports.iter().any(|p| p == name) {
            bail!("VM {} has no serial port {name}", self.name);
        }
        let path = self.port_path(name);
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(&path) {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    if let Some(status) = self.process.try_wait()? {
                        bail!("QEMU exited ({status}) before port {name} accepted a connection");
                    }
                    if Instant::now() >= deadline {
                        return Err(e).with_context(|| {
                            format!("cannot connect to port {name} at {}", path.display())
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The QMP session (connected on first use).
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        if self.qmp.is_none() {
            let qmp = Qmp::connect(&qmp_socket(self.dir.path()), Duration::from_secs(60))
                .with_context(|| format!("VM {}", self.name))?;
            self.qmp = Some(qmp);
        }
        self.qmp.as_mut().context("QMP session missing")
    }

    fn next_hotplug_port(&mut self) -> Result<String> {
        let (next, count) = self.hotplug;
        if next >= count {
            bail!(
                "VM {} has no free hot-plug port ({count} made with VmBuilder::hotplug_ports)",
                self.name
            );
        }
        self.hotplug.0 += 1;
        Ok(format!("hp{next}"))
    }

    /// Hot-plugs a raw virtio-blk disk with serial `serial` into the next free root port;
    /// returns the QEMU device id (`hotdisk-<serial>`).
    pub fn hotplug_disk(&mut self, image: &Path, serial: &str, read_only: bool) -> Result<String> {
        let bus = self.next_hotplug_port()?;
        let node = format!("hotnode-{serial}");
        let id = format!("hotdisk-{serial}");
        let qmp = self.qmp()?;
        qmp.execute(
            "blockdev-add",
            json!({
                "node-name": node,
                "driver": "raw",
                "read-only": read_only,
                "file": { "driver": "file", "filename": image, "read-only": read_only },
            }),
        )?;
        qmp.execute(
            "device_add",
            json!({ "driver": "virtio-blk-pci", "id": id, "drive": node, "serial": serial, "bus": bus }),
        )?;
        Ok(id)
    }

    /// Hot-plugs a `vhost-user-blk-pci` device on a backend's socket into the next free
    /// root port; returns the QEMU device id (`hotvub-N`).
    pub fn hotplug_vhost_user_blk(&mut self, dev: &VhostUserBlk) -> Result<String> {
        let bus = self.next_hotplug_port()?;
        let n = self.hotplug.0;
        let chardev = format!("hotvubchr-{n}");
        let id = format!("hotvub-{n}");
        let mut data = json!({
            "addr": { "type": "unix", "data": { "path": dev.socket } },
            "server": false,
        });
        if let Some(ms) = dev.reconnect_ms {
            data["reconnect-ms"] = Value::from(ms);
        }
        let mut device =
            json!({ "driver": "vhost-user-blk-pci", "id": id, "chardev": chardev, "bus": bus });
        if let Some(q) = dev.num_queues {
            device["num-queues"] = Value::from(q);
        }
        let qmp = self.qmp()?;
        qmp.execute(
            "chardev-add",
            json!({ "id": chardev, "backend": { "type": "socket", "data": data } }),
        )?;
        qmp.execute("device_add", device)?;
        Ok(id)
    }

    /// The directory holding this VM's sockets (removed on drop).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn save_console(&self, text: &str) -> Option<PathBuf> {
        let dir = workspace_root().join("target").join("vm-logs");
        fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{}.log", self.name));
        fs::write(&path, text).ok()?;
        Some(path)
    }
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        self.process.kill();
        // The pipes close with QEMU; the readers finish with the last of the output.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let text = self.console.text();
        let saved = self.save_console(&text);
        if std::thread::panicking() {
            eprintln!(
                "==== console of VM {} ({:?}, {:.1} s, saved in {}) ====\n{text}==== end of console ====",
                self.name,
                self.accel,
                self.started.elapsed().as_secs_f64(),
                saved.map_or_else(|| "nowhere".to_owned(), |p| p.display().to_string()),
            );
        }
    }
}

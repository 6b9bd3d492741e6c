//! Starting a QEMU guest: [`VmBuilder`] makes the command line, [`VmGuard`] owns the
//! running VM.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

use super::accel::{self, Accel};
use super::assets::Kernel;
use super::console::Console;
use super::guard::VmGuard;
use super::process::ChildGuard;

use layerpass::microvm::qemu::{self, Machine, escape};
pub use layerpass::microvm::qemu::{DEFAULT_APPEND, QEMU};

/// A `vhost-user-blk-pci` device on a backend's unix socket.
#[derive(Debug, Clone)]
pub struct VhostUserBlk {
    /// The backend's listening socket.
    pub socket: PathBuf,
    /// `num-queues` (QEMU's default is the number of vCPUs).
    pub num_queues: Option<u16>,
    /// `reconnect-ms` on the chardev: QEMU reconnects this often after the backend goes away.
    pub reconnect_ms: Option<u32>,
}

/// Builder for a QEMU guest booted from a kernel and an initramfs.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    name: String,
    kernel: PathBuf,
    initrd: PathBuf,
    append: String,
    memory_mib: u32,
    smp: u32,
    accel: Option<Accel>,
    drives: Vec<(PathBuf, String, bool)>,
    vhost_user_blk: Vec<VhostUserBlk>,
    ports: Vec<String>,
    hotplug_ports: usize,
    tpm: Option<PathBuf>,
    extra: Vec<OsString>,
}

impl VmBuilder {
    /// A guest named `name` (used for log files) booting `kernel` with `initrd`:
    /// 512 MiB, 2 vCPUs, [`DEFAULT_APPEND`], accelerator from [`accel::detect`].
    pub fn new(name: &str, kernel: &Kernel, initrd: &Path) -> Self {
        Self {
            name: name.to_owned(),
            kernel: kernel.vmlinuz.clone(),
            initrd: initrd.to_path_buf(),
            append: DEFAULT_APPEND.to_owned(),
            memory_mib: 512,
            smp: 2,
            accel: None,
            drives: Vec::new(),
            vhost_user_blk: Vec::new(),
            ports: Vec::new(),
            hotplug_ports: 0,
            tpm: None,
            extra: Vec::new(),
        }
    }

    /// Guest memory in MiB (a memfd shared with vhost-user backends).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Number of vCPUs.
    pub fn smp(mut self, cpus: u32) -> Self {
        self.smp = cpus;
        self
    }

    /// Appends to the kernel command line.
    pub fn append(mut self, args: &str) -> Self {
        self.append.push(' ');
        self.append.push_str(args);
        self
    }

    /// Forces the accelerator instead of detecting it.
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = Some(accel);
        self
    }

    /// A read-only raw virtio-blk disk whose serial (`/sys/block/vdX/serial`) is `serial`.
    pub fn disk(mut self, image: &Path, serial: &str) -> Self {
        self.drives
            .push((image.to_path_buf(), serial.to_owned(), true));
        self
    }

    /// A writable raw virtio-blk disk.
    pub fn disk_rw(mut self, image: &Path, serial: &str) -> Self {
        self.drives
            .push((image.to_path_buf(), serial.to_owned(), false));
        self
    }

    /// A `vhost-user-blk-pci` device. `serial` is not a property of this device: the guest
    /// sees the serial the backend answers to `VIRTIO_BLK_T_GET_ID`.
    pub fn vhost_user_blk(mut self, dev: VhostUserBlk) -> Self {
        self.vhost_user_blk.push(dev);
        self
    }

    /// A virtio-serial port the guest sees as `/sys/class/virtio-ports/*/name` = `name`
    /// (`lp_port NAME` links `/dev/virtio-ports/NAME`); the host connects with
    /// [`VmGuard::connect_port`].
    pub fn serial_port(mut self, name: &str) -> Self {
        self.ports.push(name.to_owned());
        self
    }

    /// Adds `n` empty `pcie-root-port`s (`hp0`…) for [`VmGuard::hotplug_disk`] and
    /// [`VmGuard::hotplug_vhost_user_blk`] (q35 cannot hot-plug into the root bus).
    pub fn hotplug_ports(mut self, n: usize) -> Self {
        self.hotplug_ports = n;
        self
    }

    /// A TPM 2.0 (`tpm-tis`, the guest's `/dev/tpm0` and `/dev/tpmrm0`) emulated by the
    /// swtpm whose control socket is `ctrl` (`layerpass_test_support::swtpm::Swtpm::for_qemu`).
    pub fn tpm(mut self, ctrl: &Path) -> Self {
        self.tpm = Some(ctrl.to_path_buf());
        self
    }

    /// Extra QEMU arguments, appended as they are.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// The QEMU command line for sockets in `dir` with accelerator `accel`.
    pub fn command(&self, qemu: &Path, dir: &Path, accel: Accel) -> Command {
        let machine = Machine {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            append: self.append.clone(),
            memory_mib: self.memory_mib,
            cpus: self.smp,
            accel,
        };
        let mut cmd = machine.command(qemu);
        // QEMU 10 no longer takes `serial` on `-drive`: it is a property of the device.
        for (i, (image, serial, ro)) in self.drives.iter().enumerate() {
            let ro = if *ro { ",readonly=on" } else { "" };
            cmd.arg("-drive")
                .arg(format!(
                    "file={},if=none,id=disk{i},format=raw{ro}",
                    escape(image)
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=disk{i},serial={serial}"));
        }
        for (i, dev) in self.vhost_user_blk.iter().enumerate() {
            qemu::vhost_user_blk(&mut cmd, i, &dev.socket, dev.num_queues, dev.reconnect_ms);
        }
        if !self.ports.is_empty() {
            qemu::serial_controller(&mut cmd);
        }
        for (i, name) in self.ports.iter().enumerate() {
            qemu::serial_port(&mut cmd, i, name, &port_socket(dir, name));
        }
        for i in 0..self.hotplug_ports {
            cmd.arg("-device").arg(format!(
                "pcie-root-port,id=hp{i},bus=pcie.0,chassis={},slot={}",
                i + 1,
                i + 1
            ));
        }
        if let Some(ctrl) = &self.tpm {
            cmd.arg("-chardev")
                .arg(format!("socket,id=chrtpm,path={}", escape(ctrl)))
                .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
                .args(["-device", "tpm-tis,tpmdev=tpm0"]);
        }
        cmd.arg("-chardev")
            .arg(format!(
                "socket,id=qmp,path={},server=on,wait=off",
                escape(&qmp_socket(dir))
            ))
            .args(["-mon", "chardev=qmp,mode=control"]);
        cmd.args(&self.extra);
        cmd
    }

    /// Starts the VM. Fails when `qemu-system-x86_64` is missing or cannot start.
    pub fn spawn(self) -> Result<VmGuard> {
        let qemu = crate::tools::find_tool(QEMU)
            .with_context(|| format!("{QEMU} not found (Debian package qemu-system-x86)"))?;
        let accel = match self.accel {
            Some(a) => a,
            None => accel::detect()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("layerpass-vm-")
            .tempdir()
            .context("cannot create the VM's socket directory")?;
        let mut cmd = self.command(&qemu, dir.path(), accel);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = ChildGuard::spawn(&mut cmd, QEMU)?;
        let console = Console::new(std::env::var_os("LAYERPASS_VM_CONSOLE").is_some());
        let mut readers = Vec::new();
        if let Some(out) = process.child_mut().stdout.take() {
            readers.push(console.capture(out, ""));
        }
        if let Some(err) = process.child_mut().stderr.take() {
            readers.push(console.capture(err, "qemu: "));
        }
        Ok(VmGuard {
            name: self.name,
            process,
            console,
            readers,
            dir,
            ports: self.ports,
            accel,
            cursor: 0,
            started: Instant::now(),
            hotplug: (0, self.hotplug_ports),
            qmp: None,
        })
    }
}

/// The host end of virtio-serial port `name`.
pub fn port_socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// The QMP socket of a VM.
pub fn qmp_socket(dir: &Path) -> PathBuf {
    dir.join("qmp.sock")
}

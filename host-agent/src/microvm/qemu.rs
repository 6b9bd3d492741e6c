//! The QEMU command line of a layerpass microVM: direct kernel boot, guest memory in a
//! shared memfd (vhost-user backends map it), vhost-user-blk disks and virtio-serial ports.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::accel::Accel;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// Default kernel command line: serial console, reboot (which `-no-reboot` turns into an
/// exit) right after a panic, warnings and worse on the console.
pub const DEFAULT_APPEND: &str = "console=ttyS0 panic=-1 loglevel=4";

/// What every layerpass microVM has.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// The accelerator.
    pub accel: Accel,
}

impl Machine {
    /// `qemu` with the machine's arguments: no default devices, no display, the serial
    /// console on stdio, no monitor, exit instead of reboot.
    pub fn command(&self, qemu: &Path) -> Command {
        let mut cmd = Command::new(qemu);
        let mem = self.memory_mib;
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
        ])
        .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .args(["-accel", self.accel.qemu_arg(), "-cpu", self.accel.cpu()])
        .arg("-object")
        .arg(format!("memory-backend-memfd,id=mem,size={mem}M,share=on"))
        .args(["-machine", "q35,memory-backend=mem"])
        .arg("-m")
        .arg(format!("{mem}M"))
        .arg("-smp")
        .arg(self.cpus.to_string())
        .arg("-kernel")
        .arg(&self.kernel)
        .arg("-initrd")
        .arg(&self.initrd)
        .arg("-append")
        .arg(&self.append);
        cmd
    }
}

/// Adds a `vhost-user-blk-pci` device number `index` on the backend socket `socket`.
/// `serial` is not a property of this device: the guest sees the serial the backend
/// answers to `VIRTIO_BLK_T_GET_ID`.
pub fn vhost_user_blk(
    cmd: &mut Command,
    index: usize,
    socket: &Path,
    num_queues: Option<u16>,
    reconnect_ms: Option<u32>,
) {
    let reconnect = reconnect_ms
        .map(|ms| format!(",reconnect-ms={ms}"))
        .unwrap_or_default();
    let queues = num_queues
        .map(|n| format!(",num-queues={n}"))
        .unwrap_or_default();
    cmd.arg("-chardev")
        .arg(format!(
            "socket,id=vub{index},path={}{reconnect}",
            escape(socket)
        ))
        .arg("-device")
        .arg(format!("vhost-user-blk-pci,chardev=vub{index}{queues}"));
}

/// Adds the virtio-serial controller (once, before the first [`serial_port`]).
pub fn serial_controller(cmd: &mut Command) {
    cmd.args(["-device", "virtio-serial-pci,id=vser0"]);
}

/// Adds virtio-serial port `name` (the guest sees it in `/sys/class/virtio-ports/*/name`)
/// whose host end is a listening unix socket at `socket`.
pub fn serial_port(cmd: &mut Command, index: usize, name: &str, socket: &Path) {
    cmd.arg("-chardev")
        .arg(format!(
            "socket,id=port{index},path={},server=on,wait=off",
            escape(socket)
        ))
        .arg("-device")
        .arg(format!(
            "virtserialport,bus=vser0.0,chardev=port{index},name={name}"
        ));
}

/// QEMU option values double their commas.
pub fn escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn accel_arg(accel: Accel) -> String {
        let machine = Machine {
            kernel: "vmlinuz".into(),
            initrd: "initrd".into(),
            append: DEFAULT_APPEND.to_owned(),
            memory_mib: 256,
            cpus: 2,
            accel,
        };
        let cmd = machine.command(Path::new("qemu"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        let at = args.iter().position(|&a| a == "-accel").unwrap();
        format!("{} -cpu {}", args[at + 1], args[at + 3])
    }

    /// Multi-threaded TCG lost timer interrupts and tripped on live kernel patching in
    /// 2-vCPU guests (docs/testing.md, "TCG: single-threaded"): emulated guests run
    /// single-threaded.
    #[test]
    fn tcg_guests_run_single_threaded() {
        assert_eq!(accel_arg(Accel::Tcg), "tcg,thread=single -cpu max");
        assert_eq!(accel_arg(Accel::Kvm), "kvm -cpu host");
    }
}

//! A software TPM 2.0 (`swtpm`, Debian package `swtpm`) for the tests, in a directory of
//! its own that goes with it: started with a fresh state, killed and reaped on drop, and
//! killed with the thread that started it (`PR_SET_PDEATHSIG`) if the test dies first.
//!
//! - [`Swtpm::server`]: a data socket speaking raw TPM commands (the guest agent's TPM
//!   code talks to it as it talks to `/dev/tpmrm0`);
//! - [`Swtpm::for_qemu`]: only the control socket, which QEMU's
//!   `-tpmdev emulator,chardev=...` connects to.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::require_tool;

/// A running `swtpm socket --tpm2`.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    dir: PathBuf,
    data: Option<PathBuf>,
    ctrl: PathBuf,
}

impl Swtpm {
    /// A TPM serving raw commands on a unix socket (already started up: no
    /// `TPM2_Startup` needed). `None` when swtpm is missing and skips are allowed.
    ///
    /// # Panics
    /// When swtpm is missing (skips not allowed) or does not start.
    #[must_use]
    pub fn server(dir: &Path) -> Option<Self> {
        let data = dir.join("swtpm-data.sock");
        Self::start(dir, Some(data))
    }

    /// A TPM for QEMU: the control socket only (QEMU starts the TPM up itself).
    ///
    /// # Panics
    /// When swtpm is missing (skips not allowed) or does not start.
    #[must_use]
    pub fn for_qemu(dir: &Path) -> Option<Self> {
        Self::start(dir, None)
    }

    fn start(dir: &Path, data: Option<PathBuf>) -> Option<Self> {
        let swtpm = require_tool("swtpm", "swtpm")?;
        let state = dir.join("swtpm-state");
        std::fs::create_dir_all(&state)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", state.display()));
        let ctrl = dir.join("swtpm-ctrl.sock");
        let mut cmd = Command::new(swtpm);
        cmd.args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()));
        if let Some(data) = &data {
            cmd.arg("--server")
                .arg(format!("type=unixio,path={}", data.display()))
                .args(["--flags", "not-need-init,startup-clear"]);
        }
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
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start swtpm: {e}"));
        let tpm = Self {
            child,
            dir: dir.to_owned(),
            data,
            ctrl,
        };
        let wait_for = tpm.data.clone().unwrap_or_else(|| tpm.ctrl.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !wait_for.exists() {
            assert!(
                Instant::now() < deadline,
                "swtpm did not create {} within 10 s",
                wait_for.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(tpm)
    }

    /// The raw-command socket ([`Swtpm::server`] only).
    ///
    /// # Panics
    /// On a TPM started with [`Swtpm::for_qemu`].
    #[must_use]
    pub fn data_socket(&self) -> &Path {
        match &self.data {
            Some(data) => data,
            None => panic!("a TPM started with Swtpm::for_qemu has no data socket"),
        }
    }

    /// The control socket (QEMU's `-chardev socket,path=...`).
    #[must_use]
    pub fn ctrl_socket(&self) -> &Path {
        &self.ctrl
    }

    /// The directory holding its sockets and state.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The servers under test, each its own process: `layerpass blk serve` and
//! qemu-storage-daemon. A [`ServerProc`] is killed and reaped when dropped.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::procfs;
use crate::tools::run;

/// A running server process and the sockets it listens on; killed on drop.
#[derive(Debug)]
pub struct ServerProc {
    name: &'static str,
    child: Child,
    sockets: Vec<PathBuf>,
    /// The command line, for the report.
    command: String,
}

impl ServerProc {
    /// Spawns `cmd` (after removing stale socket files: a leftover file would pass for a
    /// listening socket) and waits until it listens on every socket, or fails.
    fn spawn(
        name: &'static str,
        cmd: &mut Command,
        sockets: Vec<PathBuf>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        for s in &sockets {
            match fs::remove_file(s) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(e)
                        .with_context(|| format!("cannot remove stale socket {}", s.display()));
                }
                _ => {}
            }
        }
        let command = command_line(cmd, sockets.len());
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, getppid), allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                // The server dies with the bench, however the bench ends: an orphan would
                // keep a socket and the image of this --dir in use.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::getppid() as u32 != parent
                {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {name} ({command})"))?;
        let mut server = Self {
            name,
            child,
            sockets,
            command,
        };
        server.wait_listening(timeout)?;
        Ok(server)
    }

    /// Waits until every socket is listening (per `/proc/net/unix`, so without a probe
    /// connection the server would count as a frontend).
    fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let listening = procfs::listening_unix_paths()?;
            let missing: Vec<&PathBuf> = self
                .sockets
                .iter()
                .filter(|s| !listening.contains(*s))
                .collect();
            let Some(first) = missing.first() else {
                return Ok(());
            };
            if Instant::now() > deadline {
                bail!(
                    "{} (pid {}) does not listen on {} of its {} sockets after {:?}, e.g. {}",
                    self.name,
                    self.pid(),
                    missing.len(),
                    self.sockets.len(),
                    timeout,
                    first.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sockets(&self) -> &[PathBuf] {
        &self.sockets
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Fails, naming the server, if its process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} (pid {}) has exited: {status}; command: {}",
                self.name,
                self.child.id(),
                self.command
            ),
            Err(e) => Err(e).with_context(|| format!("cannot check on {}", self.name)),
        }
    }

    /// CPU time of the whole process so far, in clock ticks.
    pub fn cpu_ticks(&mut self) -> anyhow::Result<u64> {
        self.check_alive()?;
        procfs::cpu_ticks(self.pid())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for s in &self.sockets {
            let _ = fs::remove_file(s);
        }
    }
}

/// `qemu-storage-daemon --version`, first line.
pub fn qsd_version(qsd: &Path) -> anyhow::Result<String> {
    let out = run(Command::new(qsd).arg("--version"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// qemu-storage-daemon exporting `image` read-only on `socket`, in its best configuration
/// for this load: an iothread for the export, io_uring, page cache, one queue.
pub fn start_qsd(qsd: &Path, image: &Path, socket: &Path) -> anyhow::Result<ServerProc> {
    let mut cmd = Command::new(qsd);
    cmd.args(["--object", "iothread,id=io0", "--blockdev"])
        .arg(format!(
            "driver=file,filename={},node-name=n0,read-only=on,aio=io_uring,cache.direct=off",
            image.display()
        ))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={},writable=off,num-queues=1,iothread=io0",
            socket.display()
        ));
    ServerProc::spawn(
        "qemu-storage-daemon",
        &mut cmd,
        vec![socket.to_owned()],
        Duration::from_secs(10),
    )
}

/// The `--poll-us` default `layerpass blk serve --help` states, e.g. `20`.
pub fn default_poll_us(bin: &Path) -> Option<String> {
    let out = run(Command::new(bin).args(["blk", "serve", "--help"])).ok()?;
    let help = String::from_utf8_lossy(&out.stdout);
    let after = &help[help.find("--poll-us")?..];
    let value = &after[after.find("[default: ")? + "[default: ".len()..];
    Some(value[..value.find(']')?].to_owned())
}

/// Options of `layerpass blk serve` beyond the disk and the sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerpassOptions {
    /// `--poll-us`; `None` leaves the server's default.
    pub poll: Option<Duration>,
    /// `--workers`; `None` leaves the server's default.
    pub workers: Option<usize>,
}

/// The log filter for the server: the bench's own `LAYERPASS_LOG` or `RUST_LOG`, else
/// `warn`, so the backend's rate-limited warnings show and per-connection info lines don't.
fn log_filter() -> String {
    std::env::var("LAYERPASS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".to_owned())
}

/// `layerpass blk serve` with one queue, serving `image` on every socket of `sockets` (one
/// disk per socket). Its stderr is the bench's.
pub fn start_layerpass(
    bin: &Path,
    image: &Path,
    sockets: &[PathBuf],
    opts: LayerpassOptions,
) -> anyhow::Result<ServerProc> {
    let mut cmd = Command::new(bin);
    cmd.args(["blk", "serve"]);
    for s in sockets {
        cmd.arg("--socket").arg(s);
    }
    cmd.arg("--layer").arg(image).args(["--queues", "1"]);
    if let Some(p) = opts.poll {
        cmd.arg("--poll-us").arg(p.as_micros().to_string());
    }
    if let Some(w) = opts.workers {
        cmd.arg("--workers").arg(w.to_string());
    }
    let filter = log_filter();
    // The binary reads LAYERPASS_LOG; RUST_LOG too in case it ever does.
    cmd.env("LAYERPASS_LOG", &filter).env("RUST_LOG", &filter);
    // Generous for hundreds of sockets.
    let timeout = Duration::from_secs(10) + Duration::from_millis(50) * sockets.len() as u32;
    ServerProc::spawn("layerpass", &mut cmd, sockets.to_vec(), timeout).with_context(|| {
        if sockets.len() > 1 {
            "layerpass blk serve with several --socket (needs a layerpass that serves one disk per socket)".to_owned()
        } else {
            "layerpass blk serve".to_owned()
        }
    })
}

/// The command line for the report; with many sockets only the first two `--socket`
/// arguments are shown, then how many there are.
fn command_line(cmd: &Command, sockets: usize) -> String {
    let mut shown = 0;
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    let mut args = cmd.get_args().peekable();
    while let Some(a) = args.next() {
        if a == "--socket" && sockets > 3 {
            shown += 1;
            let value = args.next();
            if shown <= 2 {
                words.push(a.to_string_lossy().into_owned());
                words.extend(value.map(|v| v.to_string_lossy().into_owned()));
            } else if shown == 3 {
                words.push(format!("… ({sockets} sockets)"));
            }
            continue;
        }
        words.push(a.to_string_lossy().into_owned());
    }
    words.join(" ")
}

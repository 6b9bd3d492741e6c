//! Starts the process as container runtimes do: a child that enters its own mount
//! namespace (`/` made recursively private, so nothing propagates back to the guest),
//! mounts proc, a read-only sysfs, the guest's `/dev` (recursive bind) and a tmpfs
//! (mode 1777) on `/tmp` inside the rootfs, chroots into it, changes to the cwd, drops to
//! the user's groups, gid and uid, and execs the command with stdin `/dev/null` and
//! stdout and stderr on the given files (the virtio-serial ports: output streams, nothing
//! is buffered by the agent).
//!
//! # Why `std::process::Command` with `pre_exec`
//!
//! std already does the delicate parts of fork + exec right: the argv and envp are built
//! before the fork, stdio is set up with `dup2`, `SIGPIPE` is reset, an exec failure
//! comes back to the parent as an `io::Error` through a close-on-exec pipe, and a child
//! that failed is reaped. The container setup is one `pre_exec` hook that runs after
//! std's stdio setup and before exec; it only makes system calls (rustix, no libc locks)
//! on data prepared before the fork (paths are `CString`s; each mount target is opened
//! inside the rootfs with `openat2(RESOLVE_IN_ROOT)` and made the cwd, the mount's
//! target is `.`). It allocates nothing. std's own `uid`/`gid`/`current_dir` are not used: std applies them
//! before the hook, i.e. before the chroot.
//!
//! The program is resolved by the parent against the container's `PATH` inside the
//! rootfs ([`Root::lookup`]) and exec'd by its absolute in-container path, so std never
//! searches the guest's `PATH`.
//!
//! To tell a failed setup step from a failed exec, the hook writes one byte to a second
//! close-on-exec pipe: the index of the step that failed, or [`SETUP_DONE`] just before
//! exec.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, ResolveFlags, mkdirat, openat2};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::{Gid, Uid};
use rustix::thread::UnshareFlags;

use super::ProcessError;
use super::rootfs::{Lookup, Root};
use super::spec::ProcessSpec;
use super::user::{self, Identity};

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status, or 128 + the signal number when a signal killed it; 127 when the
    /// command was not found, 126 when it could not be executed.
    pub code: i32,
    /// From spawn to exit.
    pub run: Duration,
}

/// The byte the setup hook writes when every step succeeded.
const SETUP_DONE: u8 = 0xff;

/// The setup steps, in order; the hook reports a failure by its index here.
const STEPS: [&str; 12] = [
    "unsharing the mount namespace",
    "making / recursively private",
    "opening the rootfs",
    "mounting proc on /proc",
    "mounting sysfs on /sys",
    "bind-mounting /dev",
    "mounting tmpfs on /tmp",
    "changing root into the rootfs",
    "changing to the cwd",
    "setting the supplementary groups",
    "setting the gid",
    "setting the uid",
];

/// Largest `/etc/passwd` or `/etc/group` read from the container.
const ID_FILE_LIMIT: u64 = 4 << 20;

/// Everything the child's hook needs, made before the fork.
#[derive(Debug)]
struct Prepared {
    rootfs: CString,
    cwd: CString,
    groups: Vec<Gid>,
    gid: Gid,
    uid: Uid,
    marker: OwnedFd,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    move |e| ProcessError::io(what, e)
}

fn cstring(what: &str, s: &str) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Invalid(format!("{what}: contains a NUL byte")))
}

/// The user of `spec`, from the container's `/etc/passwd` and `/etc/group`.
pub fn identity(root: &Root, spec: &ProcessSpec) -> Result<Identity, ProcessError> {
    let read = |path: &str| {
        root.read_text(path, ID_FILE_LIMIT)
            .map(Option::unwrap_or_default)
            .map_err(io_err(format!("reading the container's {path}")))
    };
    let passwd = user::parse_passwd(&read("/etc/passwd")?);
    let group = user::parse_group(&read("/etc/group")?);
    Ok(user::resolve(spec.user.as_deref(), &passwd, &group)?)
}

/// Creates `/<name>` in the rootfs when missing (a mount point; the upper is writable).
fn mount_point(root: &Root, name: &str) -> Result<(), ProcessError> {
    match mkdirat(root.fd(), name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(ProcessError::io(format!("creating /{name}"), e.into())),
    }
}

/// In the child: changes the cwd to `name` resolved inside the rootfs (a symlink cannot
/// lead out of it), so that the next mount's target is `.`.
fn enter(root: &OwnedFd, name: &CStr) -> rustix::io::Result<()> {
    let dir = openat2(
        root,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    rustix::process::fchdir(&dir)
}

/// The setup hook, in the forked child: system calls only, on `p`.
///
/// Every path is resolved after `unshare`: a mount's target and the new root must be
/// mounts of the child's namespace (a directory fd opened before would still point
/// into the guest's namespace, and mounting on it fails with `EINVAL`).
fn setup(p: &Prepared) -> io::Result<()> {
    let step = |index: u8, result: rustix::io::Result<()>| -> io::Result<()> {
        result.map_err(|e| {
            let _ = rustix::io::write(&p.marker, &[index]);
            io::Error::from(e)
        })
    };
    let hardened = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    // SAFETY: only CLONE_NEWNS, which does not unshare the fd table; the child has one
    // thread.
    step(0, unsafe {
        rustix::thread::unshare_unsafe(UnshareFlags::NEWNS)
    })?;
    step(
        1,
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        ),
    )?;
    let root = rustix::fs::open(
        p.rootfs.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let root = match root {
        Ok(fd) => fd,
        Err(e) => return step(2, Err(e)),
    };
    step(
        3,
        enter(&root, c"proc")
            .and_then(|()| rustix::mount::mount(c"proc", c".", c"proc", hardened, None)),
    )?;
    step(
        4,
        enter(&root, c"sys").and_then(|()| {
            rustix::mount::mount(
                c"sysfs",
                c".",
                c"sysfs",
                hardened | MountFlags::RDONLY,
                None,
            )
        }),
    )?;
    step(
        5,
        enter(&root, c"dev").and_then(|()| rustix::mount::mount_bind_recursive(c"/dev", c".")),
    )?;
    step(
        6,
        enter(&root, c"tmp").and_then(|()| {
            rustix::mount::mount(
                c"tmpfs",
                c".",
                c"tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                Some(c"mode=1777"),
            )
        }),
    )?;
    step(
        7,
        rustix::process::fchdir(&root).and_then(|()| rustix::process::chroot(c".")),
    )?;
    step(8, rustix::process::chdir(p.cwd.as_c_str()))?;
    // The thread-level id calls are the process's: the forked child has one thread.
    step(9, rustix::thread::set_thread_groups(&p.groups))?;
    step(10, rustix::thread::set_thread_res_gid(p.gid, p.gid, p.gid))?;
    step(11, rustix::thread::set_thread_res_uid(p.uid, p.uid, p.uid))?;
    let _ = rustix::io::write(&p.marker, &[SETUP_DONE]);
    Ok(())
}

/// Writes `layerpass-guest: <cmd>: <what>` to the process's stderr.
fn report(mut stderr: &File, cmd: &str, what: &dyn std::fmt::Display) {
    if let Err(e) = writeln!(stderr, "layerpass-guest: {cmd}: {what}") {
        tracing::warn!(error = %e, "cannot write to the process's stderr");
    }
}

/// Runs `spec` in `rootfs` with stdout and stderr on the given files, waits for it and
/// returns how it ended. Needs root (mounts, chroot).
pub fn run_in_rootfs(
    rootfs: &Path,
    spec: &ProcessSpec,
    stdout: &File,
    stderr: &File,
) -> Result<Exit, ProcessError> {
    spec.validate()?;
    let root =
        Root::open(rootfs).map_err(io_err(format!("opening the rootfs {}", rootfs.display())))?;
    let id = identity(&root, spec)?;
    let env = spec.full_env(&id.home);
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| *k == "PATH")
        .map_or("", |(_, v)| *v);
    let cmd = &spec.args[0];
    let program = match root.lookup(cmd, path_var, &spec.cwd) {
        Lookup::Found(p) | Lookup::NotExecutable(p) => p,
        Lookup::NotFound => {
            report(stderr, cmd, &"command not found");
            return Ok(Exit {
                code: 127,
                run: Duration::ZERO,
            });
        }
    };
    root.mkdir_all(&spec.cwd)
        .map_err(io_err(format!("creating the cwd {}", spec.cwd)))?;
    // std's pipes are close-on-exec
    let (marker_read, marker) = io::pipe().map_err(io_err("creating a pipe"))?;
    for name in ["proc", "sys", "dev", "tmp"] {
        mount_point(&root, name)?;
    }
    let rootfs_c = CString::new(rootfs.as_os_str().as_bytes())
        .map_err(|_| ProcessError::Invalid("rootfs: contains a NUL byte".into()))?;
    let prepared = Prepared {
        rootfs: rootfs_c,
        cwd: cstring("cwd", &spec.cwd)?,
        groups: id.groups.iter().map(|&g| Gid::from_raw(g)).collect(),
        gid: Gid::from_raw(id.gid),
        uid: Uid::from_raw(id.uid),
        marker: marker.into(),
    };
    let clone = |f: &File, what: &str| {
        f.try_clone()
            .map_err(io_err(format!("duplicating the {what} fd")))
    };
    let mut command = Command::new(&program);
    command
        .arg0(cmd)
        .args(&spec.args[1..])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(clone(stdout, "stdout")?)
        .stderr(clone(stderr, "stderr")?);
    // SAFETY: the hook runs in the forked child between fork and exec; it only makes
    // system calls on memory prepared before the fork (see the module docs) and takes
    // no locks, so it is safe even if the parent had other threads.
    unsafe {
        command.pre_exec(move || setup(&prepared));
    }
    let start = Instant::now();
    let spawned = command.spawn();
    // Closes the parent's copy of the marker's write end.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let mut byte = [0u8];
            let step = match rustix::io::read(&marker_read, &mut byte) {
                Ok(1) => Some(byte[0]),
                _ => None,
            };
            return match step {
                Some(SETUP_DONE) => {
                    // exec failed: the shell's codes
                    report(stderr, cmd, &e);
                    let code = if e.kind() == io::ErrorKind::NotFound {
                        127
                    } else {
                        126
                    };
                    Ok(Exit {
                        code,
                        run: start.elapsed(),
                    })
                }
                Some(i) => Err(ProcessError::Setup {
                    step: STEPS.get(usize::from(i)).copied().unwrap_or("unknown step"),
                    source: e,
                }),
                None => Err(ProcessError::io(format!("starting {program}"), e)),
            };
        }
    };
    tracing::debug!(pid = child.id(), program, "started");
    let status = child
        .wait()
        .map_err(io_err(format!("waiting for {program}")))?;
    let run = start.elapsed();
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255);
    Ok(Exit { code, run })
}

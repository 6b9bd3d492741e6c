//! `layerpass-guest run`'s process part on the host: a directory rootfs holding
//! busybox-static, processes run in it through `process::run_in_rootfs` (own mount
//! namespace, proc/sys/dev/tmp, chroot, user, PATH lookup inside the rootfs), output to
//! files. Needs root and busybox-static; without them the checks fail (unless skips are
//! allowed, see layerpass_test_support::skip).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs::File;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use layerpass_guest::process::{self, ProcessError, ProcessSpec};
use layerpass_test_support::tools::{require_root, require_tool};

const APPLETS: &[&str] = &[
    "sh", "echo", "env", "id", "pwd", "cat", "stat", "test", "true", "readlink", "ls",
];

/// Writing an executable while another test thread forks lets the child inherit the
/// write descriptor until it execs, and then exec of that file fails with ETXTBSY (Text
/// file busy). Building a rootfs takes this lock for writing, running a process in one
/// takes it for reading: no fork happens while a file is open for writing.
static FORK_VS_WRITE: RwLock<()> = RwLock::new(());

/// A rootfs: busybox in /bin with applet links, a user 1000 `user` in groups wheel and
/// audio, `/lp-only/busybox` reachable only through the absolute symlink
/// `/opt/tools/echo`, and a non-executable `/bin/noexec`.
struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    fn new() -> Option<Self> {
        if !require_root("mounting proc, sysfs and tmpfs and chrooting into a rootfs") {
            return None;
        }
        let busybox = require_tool("busybox", "busybox-static")?;
        let _writing = FORK_VS_WRITE.write().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("rootfs");
        for d in ["bin", "etc", "opt/tools", "lp-only", "home/user"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy(&busybox, r.join("bin/busybox")).unwrap();
        std::fs::copy(&busybox, r.join("lp-only/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", r.join("bin").join(applet)).unwrap();
        }
        symlink("/lp-only/busybox", r.join("opt/tools/echo")).unwrap();
        std::fs::write(r.join("bin/noexec"), "#!/bin/sh\necho no\n").unwrap();
        std::fs::set_permissions(r.join("bin/noexec"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:User:/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/group"),
            "root:x:0:\nwheel:x:10:user\naudio:x:29:root,user\nuser:x:1000:\n",
        )
        .unwrap();
        Some(Self { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Runs `json` (process.json); returns the exit code, stdout and stderr.
    fn run(&self, json: &str) -> (i32, String, String) {
        let spec = ProcessSpec::parse(json).unwrap();
        let (exit, out, err) = self.try_run(&spec).unwrap();
        (exit.code, out, err)
    }

    fn try_run(&self, spec: &ProcessSpec) -> Result<(process::Exit, String, String), ProcessError> {
        let out_path = self.dir.path().join("stdout");
        let err_path = self.dir.path().join("stderr");
        let out = File::create(&out_path).unwrap();
        let err = File::create(&err_path).unwrap();
        let exit = {
            let _forking = FORK_VS_WRITE.read().unwrap_or_else(|e| e.into_inner());
            process::run_in_rootfs(&self.path(), spec, &out, &err)?
        };
        Ok((
            exit,
            std::fs::read_to_string(out_path).unwrap(),
            std::fs::read_to_string(err_path).unwrap(),
        ))
    }
}

impl Drop for Rootfs {
    /// The child's mounts lived in its own namespace: none is visible here, before or
    /// after the run.
    fn drop(&mut self) {
        assert_eq!(mounts_under(self.dir.path()), Vec::<String>::new());
    }
}

/// Mount points of this (the host's) mount namespace under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(dir))
        .map(str::to_owned)
        .collect()
}

#[test]
fn output_and_exit_codes() {
    let Some(root) = Rootfs::new() else { return };
    assert_eq!(
        root.run(r#"{"args":["echo","hello","world"]}"#),
        (0, "hello world\n".into(), String::new())
    );
    assert_eq!(root.run(r#"{"args":["sh","-c","exit 3"]}"#).0, 3);
    let (code, out, err) = root.run(r#"{"args":["sh","-c","echo out; echo err >&2; exit 0"]}"#);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "out\n", "err\n"));
    // killed by SIGKILL: 128 + 9
    assert_eq!(root.run(r#"{"args":["sh","-c","kill -9 $$"]}"#).0, 137);
    // stdin is /dev/null
    assert_eq!(
        root.run(r#"{"args":["cat"]}"#),
        (0, String::new(), String::new())
    );
}

#[test]
fn missing_and_non_executable_commands_exit_127_and_126() {
    let Some(root) = Rootfs::new() else { return };
    assert_eq!(
        root.run(r#"{"args":["no-such-cmd","x"]}"#),
        (
            127,
            String::new(),
            "layerpass-guest: no-such-cmd: command not found\n".into()
        )
    );
    let (code, out, err) = root.run(r#"{"args":["/bin/no-such-file"]}"#);
    assert_eq!((code, out.as_str()), (127, ""));
    assert!(
        err.starts_with("layerpass-guest: /bin/no-such-file: No such file or directory"),
        "{err}"
    );
    for cmd in ["noexec", "/bin/noexec"] {
        let (code, _, err) = root.run(&format!(r#"{{"args":["{cmd}"]}}"#));
        assert_eq!(code, 126, "{cmd}: {err}");
        assert!(
            err.starts_with(&format!("layerpass-guest: {cmd}: Permission denied")),
            "{err}"
        );
    }
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn the_environment_is_exactly_the_specs_with_path_and_home_defaults() {
    let Some(root) = Rootfs::new() else { return };
    let (code, out, _) = root.run(r#"{"args":["env"],"env":["A=1","B=two words","C=x=y"]}"#);
    assert_eq!(code, 0);
    assert_eq!(
        sorted_lines(&out),
        [
            "A=1",
            "B=two words",
            "C=x=y",
            "HOME=/root",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    );
    let (_, out, _) =
        root.run(r#"{"args":["/bin/env"],"env":["PATH=/bin","HOME=/h"],"user":"user"}"#);
    assert_eq!(sorted_lines(&out), ["HOME=/h", "PATH=/bin"]);
    let (_, out, _) = root.run(r#"{"args":["env"],"user":"user"}"#);
    assert!(out.contains("HOME=/home/user\n"), "{out}");
}

#[test]
fn cwd_is_set_and_created_when_missing() {
    let Some(root) = Rootfs::new() else { return };
    assert_eq!(
        root.run(r#"{"args":["pwd"],"cwd":"/etc"}"#),
        (0, "/etc\n".into(), String::new())
    );
    assert_eq!(
        root.run(r#"{"args":["pwd"],"cwd":"/work/deep/dir"}"#),
        (0, "/work/deep/dir\n".into(), String::new())
    );
    assert!(root.path().join("work/deep/dir").is_dir());
    // a relative command is relative to the cwd
    assert_eq!(
        root.run(r#"{"args":["./busybox","echo","rel"],"cwd":"/bin"}"#),
        (0, "rel\n".into(), String::new())
    );
}

#[test]
fn the_user_gets_its_ids_and_supplementary_groups() {
    let Some(root) = Rootfs::new() else { return };
    let (code, out, err) = root.run(r#"{"args":["id"],"user":"user"}"#);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("uid=1000(user) gid=1000(user) groups="),
        "{out}"
    );
    assert!(
        out.contains("10(wheel)") && out.contains("29(audio)"),
        "{out}"
    );
    let (_, out, _) = root.run(r#"{"args":["id"],"user":"1000:29"}"#);
    assert!(out.starts_with("uid=1000(user) gid=29(audio)"), "{out}");
    assert!(!out.contains("wheel"), "{out}");
    let (_, out, _) = root.run(r#"{"args":["id","-u"],"user":"4321"}"#);
    assert_eq!(out, "4321\n");
    let (_, out, _) = root.run(r#"{"args":["id"]}"#);
    assert!(out.starts_with("uid=0(root) gid=0(root)"), "{out}");

    let spec = ProcessSpec::parse(r#"{"args":["id"],"user":"nobody"}"#).unwrap();
    let err = root.try_run(&spec).unwrap_err();
    assert!(matches!(err, ProcessError::User(_)), "{err}");
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[test]
fn proc_sys_dev_and_tmp_are_mounted_inside() {
    let Some(root) = Rootfs::new() else { return };
    assert_eq!(
        root.run(r#"{"args":["cat","/proc/self/comm"]}"#),
        (0, "cat\n".into(), String::new())
    );
    assert_eq!(
        root.run(r#"{"args":["stat","-c","%a","/tmp"]}"#),
        (0, "1777\n".into(), String::new())
    );
    let (code, _, err) = root.run(r#"{"args":["sh","-c","test -c /dev/null && test -d /sys/kernel && ! touch /sys/x 2>/dev/null"]}"#);
    assert_eq!(code, 0, "{err}");
    // the mount points were created in the rootfs, empty
    for d in ["proc", "sys", "dev", "tmp"] {
        let p = root.path().join(d);
        assert!(
            p.is_dir() && std::fs::read_dir(&p).unwrap().next().is_none(),
            "{d}"
        );
    }
}

#[test]
fn absolute_symlinks_resolve_inside_the_rootfs() {
    let Some(root) = Rootfs::new() else { return };
    // /opt/tools/echo -> /lp-only/busybox, which exists only in the rootfs
    assert!(!Path::new("/lp-only").exists());
    assert_eq!(
        root.run(r#"{"args":["echo","via symlink"],"env":["PATH=/opt/tools"]}"#),
        (0, "via symlink\n".into(), String::new())
    );
    // a PATH that exists only on the guest is not searched there
    let (code, _, _) = root.run(r#"{"args":["busybox"],"env":["PATH=/usr/bin"]}"#);
    assert_eq!(code, 127);
}

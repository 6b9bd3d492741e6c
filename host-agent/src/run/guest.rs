//! The guest side of a run, prepared on the host: the kernel and its modules, busybox,
//! the static guest agent and the project's init, packed into a base initramfs cached
//! under the asset cache (keyed by the hash of everything in it), and the small cpio
//! appended per run that carries the plan, the process and the reference values.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::RunError;
use crate::microvm::VmError;
use crate::microvm::assets::{AssetCache, Kernel, Notify};
use crate::microvm::initramfs::Initramfs;
use crate::microvm::modules::{self, DEFAULT_MODULES, Module};

/// The project's guest init.
pub const GUEST_INIT: &str = include_str!("init.sh");
/// The guest agent's file name.
pub const AGENT_NAME: &str = "layerpass-guest";
/// Where the appended cpio puts the run's files.
pub const RUN_FILES: &str = "/layerpass";
/// The modules an encrypted scratch upper needs on top of [`DEFAULT_MODULES`].
pub const ENCRYPTED_MODULES: &[&str] = &["dm_integrity", "dm_crypt", "aegis128"];

/// Everything the base initramfs is made of.
#[derive(Debug, Clone)]
pub struct GuestAssets {
    /// The kernel.
    pub kernel: Kernel,
    /// Modules to load, dependencies first.
    pub modules: Vec<Module>,
    /// The static busybox.
    pub busybox: PathBuf,
    /// The static guest agent.
    pub agent: PathBuf,
}

impl GuestAssets {
    /// Resolves the modules `kernel` needs (with dm-crypt and dm-integrity when `encrypted`).
    pub fn new(
        kernel: Kernel,
        busybox: PathBuf,
        agent: PathBuf,
        encrypted: bool,
    ) -> Result<Self, RunError> {
        let mut wanted: Vec<&str> = DEFAULT_MODULES.to_vec();
        if encrypted {
            wanted.extend_from_slice(ENCRYPTED_MODULES);
        }
        let modules = modules::resolve(&kernel, &wanted)?;
        Ok(Self {
            kernel,
            modules,
            busybox,
            agent,
        })
    }

    /// The base initramfs, built on first use into `<cache>/initramfs/<hash>.cpio.gz`.
    pub fn base_initrd(&self, cache: &AssetCache, notify: Notify<'_>) -> Result<PathBuf, RunError> {
        let key = self.key()?;
        let dir = cache.dir().join("initramfs");
        let path = dir.join(format!("{key}.cpio.gz"));
        if path.is_file() {
            return Ok(path);
        }
        let _lock = cache.lock("initramfs.lock")?;
        if path.is_file() {
            return Ok(path);
        }
        notify("building the guest initramfs");
        fs::create_dir_all(&dir).map_err(VmError::io("create", &dir))?;
        let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let mut image = Initramfs::empty();
        image
            .busybox(&self.busybox)?
            .modules(&self.modules)
            .host_file(&format!("/bin/{AGENT_NAME}"), &self.agent, 0o755)
            .init(GUEST_INIT);
        let written = image.write(&tmp).and_then(|()| {
            fs::rename(&tmp, &path).map_err(VmError::io("rename into place", &path))
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        // Older images of other agent builds are not needed any more.
        prune(&dir, &path);
        Ok(path)
    }

    /// The key of everything the base image holds: the init script's bytes, and each
    /// file's path, size, modification time and inode (a rebuilt agent or an updated
    /// package changes them). Hashing the files' contents instead cost seconds per run
    /// (about 15 MB through a debug build's SHA-256).
    fn key(&self) -> Result<String, RunError> {
        use std::os::unix::fs::MetadataExt;
        let mut h = Sha256::new();
        h.update(GUEST_INIT.as_bytes());
        let files = self
            .modules
            .iter()
            .map(|m| m.path.as_path())
            .chain([self.busybox.as_path(), self.agent.as_path()]);
        for path in files {
            let m = fs::metadata(path).map_err(VmError::io("stat", path))?;
            h.update(path.as_os_str().as_encoded_bytes());
            for n in [m.len(), m.ino(), m.dev()] {
                h.update(n.to_le_bytes());
            }
            h.update(m.mtime().to_le_bytes());
            h.update(m.mtime_nsec().to_le_bytes());
        }
        for m in &self.modules {
            h.update(m.name.as_bytes());
        }
        Ok(hex::encode(&h.finalize()[..16]))
    }
}

/// Keeps the newest few base images (several agents may be in use at once).
fn prune(dir: &Path, keep: &Path) {
    const KEEP: usize = 4;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut images: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p != keep && p.extension().is_some_and(|e| e == "gz"))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    images.sort();
    let excess = images.len().saturating_sub(KEEP - 1);
    for (_, p) in images.into_iter().take(excess) {
        let _ = fs::remove_file(p);
    }
}

/// The guest agent: `explicit`, else `layerpass-guest` beside the running executable. It
/// must be statically linked (the initramfs has no C library).
pub fn find_agent(explicit: Option<&Path>) -> Result<PathBuf, RunError> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let exe =
                std::env::current_exe().map_err(VmError::io("find", "the running executable"))?;
            let beside = exe.with_file_name(AGENT_NAME);
            if !beside.is_file() {
                return Err(RunError::Agent(format!(
                    "no {AGENT_NAME} beside {} : build it statically (see the README) or pass --guest-agent PATH",
                    exe.display()
                )));
            }
            beside
        }
    };
    check_static(&path)?;
    Ok(path)
}

/// Refuses a file that is not a statically linked x86-64 ELF executable (one with a
/// `PT_INTERP` program header needs a dynamic loader the initramfs does not have).
pub fn check_static(path: &Path) -> Result<(), RunError> {
    let bad = |why: &str| RunError::Agent(format!("{}: {why}", path.display()));
    let mut head = Vec::new();
    fs::File::open(path)
        .map_err(VmError::io("open", path))?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(VmError::io("read", path))?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(bad("not an ELF executable"));
    }
    if head[4] != 2 || head[5] != 1 || u16::from_le_bytes([head[18], head[19]]) != 62 {
        return Err(bad("not a 64-bit little-endian x86-64 ELF"));
    }
    let u64_at = |o: usize| {
        head.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let u16_at = |o: usize| {
        head.get(o..o + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Err(bad("truncated ELF header"));
    };
    for i in 0..usize::from(phnum) {
        let off = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i * usize::from(phentsize)))
            .ok_or_else(|| bad("program headers out of range"))?;
        let p_type = head
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| bad("program headers beyond the first 64 KiB"))?;
        if p_type == 3 {
            return Err(bad(
                "dynamically linked (it has an interpreter); build it with RUSTFLAGS='-C target-feature=+crt-static' --target x86_64-unknown-linux-gnu",
            ));
        }
    }
    Ok(())
}

/// The cpio appended to the base initramfs: `files` under [`RUN_FILES`].
pub fn appendix(files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, RunError> {
    let mut image = Initramfs::empty();
    for (name, data) in files {
        image.file(&format!("{RUN_FILES}/{name}"), data, 0o644);
    }
    Ok(image.appendix()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_refused_and_a_static_one_accepted() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap_or_default();
        let err = check_static(&me).err();
        assert!(
            matches!(&err, Some(RunError::Agent(m)) if m.contains("dynamically linked")),
            "{err:?}"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = dir.path().join("script");
        fs::write(&text, b"#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_static(&text).is_err());
        // busybox-static is static.
        let busybox = Path::new("/bin/busybox");
        if busybox.is_file() {
            check_static(busybox).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

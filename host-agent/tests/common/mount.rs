//! Read-only kernel mounts of EROFS images and overlayfs stacks, undone on drop (also when
//! a test panics). `-o loop` gives loop devices that the kernel frees at unmount.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

#[derive(Debug)]
pub struct Mount {
    dir: TempDir,
    mounted: bool,
}

impl Mount {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Mounts the EROFS image `image` (its leading blocks; an appended tree is ignored).
    pub fn erofs(image: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Self {
            dir,
            mounted: false,
        };
        super::tools::run(
            Command::new("mount")
                .args(["-t", "erofs", "-o", "ro,loop"])
                .arg(image)
                .arg(m.path()),
        );
        m.mounted = true;
        m
    }

    /// Mounts overlayfs with `lowers` (top first) read-only.
    pub fn overlay(lowers: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Self {
            dir,
            mounted: false,
        };
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        super::tools::run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!("ro,lowerdir={}", lower.join(":")))
                .arg(m.path()),
        );
        m.mounted = true;
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

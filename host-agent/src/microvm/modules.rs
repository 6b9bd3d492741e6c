//! Kernel modules for the guest: the dependency closure of the wanted modules from
//! `modules.dep`, in load order, skipping what `modules.builtin` says is built in, and
//! decompressed so busybox `insmod` can load them.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::assets::Kernel;
use super::error::VmError;
use super::tool::run;

/// What every layerpass guest needs: virtio PCI, block and console (virtio-serial), EROFS,
/// overlayfs, ext4 (built into the cloud kernel; listed for kernels where it is a module)
/// and dm-verity (which pulls dm-mod, dm-bufio and reed_solomon).
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "erofs",
    "overlay",
    "ext4",
    "dm_mod",
    "dm_verity",
];

/// One module to load.
#[derive(Debug, Clone)]
pub struct Module {
    /// Normalised name (`-` → `_`), as in `/proc/modules`.
    pub name: String,
    /// The file in the kernel package (possibly compressed).
    pub path: PathBuf,
}

impl Module {
    /// The module's ELF bytes (`.ko.xz`, `.ko.zst` and `.ko.gz` decompressed).
    pub fn contents(&self) -> Result<Vec<u8>, VmError> {
        let name = self.path.to_string_lossy();
        let tool = if name.ends_with(".ko.xz") {
            Some("xz")
        } else if name.ends_with(".ko.zst") {
            Some("zstd")
        } else if name.ends_with(".ko.gz") {
            Some("gzip")
        } else {
            None
        };
        match tool {
            None => fs::read(&self.path).map_err(VmError::io("read", &self.path)),
            Some(tool) => Ok(run(Command::new(tool).arg("-dc").arg(&self.path))?.stdout),
        }
    }
}

/// `dm-mod.ko.xz` → `dm_mod`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The modules to load for `wanted`, dependencies first, each once; built-in ones left out.
/// A kernel without a modules directory loads nothing (what it needs must be built in; the
/// guest init checks).
pub fn resolve(kernel: &Kernel, wanted: &[&str]) -> Result<Vec<Module>, VmError> {
    let Some(dir) = &kernel.modules_dir else {
        return Ok(Vec::new());
    };
    let dep_path = dir.join("modules.dep");
    let dep_text = fs::read_to_string(&dep_path).map_err(VmError::io("read", &dep_path))?;
    let builtin_text = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: HashSet<String> = builtin_text.lines().map(module_name).collect();
    let deps = parse_dep(&dep_text);
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for want in wanted {
        let name = want.replace('-', "_");
        if builtin.contains(&name) {
            continue;
        }
        if !deps.contains_key(&name) {
            return Err(VmError::Asset(format!(
                "module {want} is neither built into kernel {} nor in its modules.dep",
                kernel.release
            )));
        }
        visit(&name, &deps, &mut seen, &mut Vec::new(), &mut order)?;
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let path = dir.join(&deps[&name].0);
            Module { name, path }
        })
        .collect())
}

/// name → (relative path, dependency names).
fn parse_dep(text: &str) -> HashMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(path, deps)| {
            let deps = deps.split_whitespace().map(module_name).collect();
            (module_name(path), (path.trim().to_owned(), deps))
        })
        .collect()
}

fn visit(
    name: &str,
    deps: &HashMap<String, (String, Vec<String>)>,
    seen: &mut HashSet<String>,
    stack: &mut Vec<String>,
    order: &mut Vec<String>,
) -> Result<(), VmError> {
    if seen.contains(name) {
        return Ok(());
    }
    if stack.iter().any(|s| s == name) {
        return Err(VmError::Asset(format!(
            "module dependency cycle: {stack:?} -> {name}"
        )));
    }
    let (_, children) = deps.get(name).ok_or_else(|| {
        VmError::Asset(format!(
            "module {name} (needed by {stack:?}) is not in modules.dep"
        ))
    })?;
    stack.push(name.to_owned());
    for child in children {
        visit(child, deps, seen, stack, order)?;
    }
    stack.pop();
    seen.insert(name.to_owned());
    order.push(name.to_owned());
    Ok(())
}

/// The path of module `name` inside the initramfs.
pub fn guest_path(name: &str) -> String {
    format!("/lib/modules/{name}.ko")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_once() {
        let deps = parse_dep(
            "kernel/drivers/md/dm-mod.ko:\n\
             kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko\n\
             kernel/lib/reed_solomon/reed_solomon.ko.xz:\n\
             kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/reed_solomon/reed_solomon.ko.xz\n",
        );
        let (mut seen, mut order) = (HashSet::new(), Vec::new());
        for m in ["dm_mod", "dm_verity"] {
            visit(m, &deps, &mut seen, &mut Vec::new(), &mut order).unwrap();
        }
        assert_eq!(order, ["dm_mod", "dm_bufio", "reed_solomon", "dm_verity"]);
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/drivers/md/dm-mod.ko.zst"), "dm_mod");
        assert_eq!(module_name("kernel/fs/erofs/erofs.ko"), "erofs");
    }
}

//! `lptree DIR`: one line per entry under DIR (DIR itself first, then depth-first in byte
//! order of names), every attribute the layer tests compare, for the busybox guest (which
//! has no `getfattr`). Built by `vm::static_bin::static_rustc` with rustc alone (std only,
//! glibc's `llistxattr`/`lgetxattr`), statically linked.
//!
//! `N <path hex> <type> <perm octal> <uid> <gid> <mtime s> <mtime ns> <nlink> <ino> <size>
//! <major> <minor> <link target hex | -> <xattrs: name hex=value hex,… | ->`
//! with `<type>` one of `d f l c b p s`. File contents are hashed by the script
//! (`sha256sum`); the path of DIR itself is `-`.

use std::ffi::{CString, c_char};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

unsafe extern "C" {
    fn llistxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize;
    fn lgetxattr(path: *const c_char, name: *const c_char, value: *mut u8, size: usize)
    -> isize;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn xattrs(path: &Path) -> String {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 1 << 16];
    // SAFETY: `c` is NUL-terminated and `names` is writable for its length.
    let n = unsafe { llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    let mut out = Vec::new();
    let mut list: Vec<&[u8]> = names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    list.sort();
    for name in list {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 1 << 16];
        // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
        let len = unsafe { lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr(), value.len()) };
        assert!(len >= 0, "lgetxattr {}", path.display());
        out.push(format!("{}={}", hex(name), hex(&value[..len as usize])));
    }
    if out.is_empty() { "-".to_owned() } else { out.join(",") }
}

fn visit(root: &Path, rel: &[u8], out: &mut impl Write) {
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    };
    let md = fs::symlink_metadata(&full).unwrap();
    let ft = md.file_type();
    let typ = if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    };
    let rdev = md.rdev();
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    let target = if ft.is_symlink() {
        hex(fs::read_link(&full).unwrap().as_os_str().as_bytes())
    } else {
        "-".to_owned()
    };
    let shown = if rel.is_empty() { "-".to_owned() } else { hex(rel) };
    writeln!(
        out,
        "N {shown} {typ} {:o} {} {} {} {} {} {} {} {major} {minor} {target} {}",
        md.mode() & 0o7777,
        md.uid(),
        md.gid(),
        md.mtime(),
        md.mtime_nsec(),
        md.nlink(),
        md.ino(),
        md.len(),
        xattrs(&full)
    )
    .unwrap();
    if ft.is_dir() {
        let mut names: Vec<Vec<u8>> = fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        for n in names {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&n);
            visit(root, &child, out);
        }
    }
}

fn main() {
    let dir = std::env::args_os().nth(1).expect("usage: lptree DIR");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    visit(Path::new(&dir), b"", &mut out);
    out.flush().unwrap();
}

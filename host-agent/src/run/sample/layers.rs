//! The three layers of the sample image, and what each demonstrates:
//!
//! 1. base: busybox and a symlink per applet, `/etc` (os-release, passwd, group), the usual
//!    top-level directories, and files that the upper layers remove;
//! 2. adds: files (a script, 1 MiB of data) and a hard link;
//! 3. changes: a whiteout removes a file of layer 1 and an opaque directory hides the
//!    files layer 1 put there.

use sha2::{Digest as _, Sha256};

use super::busybox::Busybox;
use super::tarball::LayerTar;

/// Size of `/usr/share/sample/data.bin`.
pub const DATA_LEN: usize = 1024 * 1024;
/// The path layer 3 deletes with a whiteout.
pub const REMOVED: &str = "etc/layerpass/removed";
/// The directory layer 3 makes opaque.
pub const OPAQUE_DIR: &str = "usr/share/sample/old";

const DIR: u32 = 0o755;
const FILE: u32 = 0o644;
const EXEC: u32 = 0o755;

/// `/usr/share/sample/data.bin`: sha256 of a counter, block after block, so that no two
/// 32-byte blocks are equal and a byte flipped anywhere is found in a known place.
pub fn data_bin() -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_LEN);
    let mut counter: u64 = 0;
    while out.len() < DATA_LEN {
        let mut h = Sha256::new();
        h.update(b"layerpass sample data.bin ");
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(DATA_LEN);
    out
}

/// Layer 1: busybox, its applets, `/etc`, the top-level directories.
pub fn base(busybox: &Busybox) -> LayerTar {
    let mut t = LayerTar::default();
    t.dir("bin", DIR)
        .file("bin/busybox", EXEC, busybox.bytes.clone());
    for applet in &busybox.applets {
        t.symlink(&format!("bin/{applet}"), "busybox");
    }
    let os_release = format!(
        "NAME=\"layerpass sample\"\nID=layerpass-sample\nVERSION_ID=1\n\
         PRETTY_NAME=\"layerpass sample image (busybox {})\"\n",
        busybox.version
    );
    t.dir("etc", DIR)
        .file("etc/os-release", FILE, os_release)
        .file(
            "etc/passwd",
            FILE,
            "root:x:0:0:root:/root:/bin/sh\n\
             user:x:1000:1000:user:/home/user:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file(
            "etc/group",
            FILE,
            "root:x:0:\nuser:x:1000:\nusers:x:100:user\nnogroup:x:65534:\n",
        )
        .dir("etc/layerpass", DIR)
        .file(
            REMOVED,
            FILE,
            "this file is deleted by a whiteout in layer 3\n",
        );
    t.dir("root", 0o700)
        .dir("home", DIR)
        .dir_owned("home/user", DIR, 1000)
        .dir("tmp", 0o1777)
        .dir("proc", DIR)
        .dir("sys", DIR)
        .dir("dev", DIR);
    t.dir("usr", DIR)
        .dir("usr/bin", DIR)
        .dir("usr/share", DIR)
        .dir("usr/share/sample", DIR)
        .dir(OPAQUE_DIR, DIR)
        .file(
            &format!("{OPAQUE_DIR}/a"),
            FILE,
            "hidden by the opaque directory of layer 3\n",
        )
        .file(
            &format!("{OPAQUE_DIR}/b"),
            FILE,
            "hidden by the opaque directory of layer 3\n",
        );
    t
}

/// Layer 2: new files and a hard link.
pub fn adds() -> LayerTar {
    let mut t = LayerTar::default();
    t.dir("etc", DIR)
        .file(
            "etc/motd",
            FILE,
            "layerpass: this rootfs is three verified EROFS layers\n",
        )
        .dir("etc/layerpass", DIR)
        .file("etc/layerpass/added", FILE, "added by layer 2\n");
    t.dir("usr", DIR)
        .dir("usr/bin", DIR)
        .file(
            "usr/bin/hello",
            EXEC,
            "#!/bin/sh\necho hello from a verified layer\n",
        )
        .dir("usr/share", DIR)
        .dir("usr/share/sample", DIR)
        .file("usr/share/sample/data.bin", FILE, data_bin())
        .hardlink("usr/share/sample/data.link", "usr/share/sample/data.bin");
    t
}

/// Layer 3: a whiteout and an opaque directory.
pub fn changes() -> LayerTar {
    let mut t = LayerTar::default();
    t.dir("etc", DIR)
        .dir("etc/layerpass", DIR)
        .file("etc/layerpass/.wh.removed", FILE, Vec::new());
    t.dir("usr", DIR)
        .dir("usr/share", DIR)
        .dir("usr/share/sample", DIR)
        .dir(OPAQUE_DIR, DIR)
        .file(&format!("{OPAQUE_DIR}/.wh..wh..opq"), FILE, Vec::new())
        .file(
            &format!("{OPAQUE_DIR}/c"),
            FILE,
            "only c survives the opaque directory\n",
        );
    t
}

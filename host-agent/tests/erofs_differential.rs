//! Differential test against containerd's converter: mkfs.erofs ≥ 1.8 (`--tar=f --aufs
//! -Enoinline_data -b4096 -T0 --mkfs-time`, Debian 13's build, fetched and run by
//! `scripts/erofs-utils-trixie`; 1.8.6 when this was written) and layerpass convert the
//! same tars; both images are mounted and the trees must be identical in every attribute,
//! whiteouts and overlay xattrs included. Each test states how many trees it compared.
//!
//! The one named exception: directories the tar does not list (implicit directories, and
//! the root when the tar has no `./` entry). layerpass creates them 0755 root:root with the
//! build time as mtime, as containerd's overlayfs applier does; mkfs.erofs 1.8.6 makes an
//! implicit root 0777 and gives other implicit directories 0755 (plus group/other write
//! if the parent has them) with the owner and mtime of their parent. For those paths
//! only, the mode, owner and mtime are not compared (type, xattrs, nlink and content are).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;

use std::path::Path;

use common::tools::erofs_utils::ErofsUtils;
use common::walk::{Node, Tree};
use common::{corpus, debian, model, mount::Mount, tools, walk};
use layerpass::erofs::{ConvertOptions, convert_layer};
use layerpass_test_support::counted;

fn mkfs_new(erofs: &ErofsUtils, tar: &Path, out: &Path) {
    tools::run(
        erofs
            .command("mkfs.erofs")
            .args([
                "--tar=f",
                "--aufs",
                "-Enoinline_data",
                "-b4096",
                "-T0",
                "--mkfs-time",
                "--quiet",
            ])
            .arg(out)
            .arg(tar),
    );
}

/// The implicit-directory exception, applied to both trees.
fn mask_implicit(tree: &mut Tree, implicit: &[String]) {
    for p in implicit {
        if let Some(n) = tree.get_mut(p) {
            *n = Node {
                perm: 0,
                uid: 0,
                gid: 0,
                mtime: (0, 0),
                ..n.clone()
            };
        }
    }
}

fn compare(erofs: &ErofsUtils, name: &str, tar: &[u8], dir: &Path) {
    let tar_path = dir.join(format!("{name}.tar"));
    std::fs::write(&tar_path, tar).unwrap();
    let theirs = dir.join(format!("{name}.mkfs.erofs"));
    mkfs_new(erofs, &tar_path, &theirs);
    let ours = dir.join(format!("{name}.erofs"));
    convert_layer(tar, &ours, &ConvertOptions::default()).unwrap();
    tools::fsck(&ours);
    let implicit = model::expected(tar, 0).implicit_dirs;
    let m_ours = Mount::erofs(&ours);
    let m_theirs = Mount::erofs(&theirs);
    let mut a = walk::walk(m_theirs.path());
    let mut b = walk::walk(m_ours.path());
    mask_implicit(&mut a, &implicit);
    mask_implicit(&mut b, &implicit);
    walk::assert_same(
        &format!("{name}: mkfs.erofs {} vs layerpass", erofs.version()),
        &a,
        &b,
        &[],
    );
}

/// What both tests need, all before the first comparison.
fn require() -> Option<ErofsUtils> {
    let erofs = tools::erofs_utils::require()?;
    tools::can_mount().then_some(erofs)
}

#[test]
fn generated_tars_match_mkfs_erofs() {
    let Some(erofs) = require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus::all_for_mkfs();
    for (name, tar) in &corpus {
        compare(&erofs, name, tar, dir.path());
    }
    counted::compared(
        corpus.len(),
        5,
        &format!(
            "generated trees identical to mkfs.erofs {}",
            erofs.version()
        ),
    );
}

#[test]
fn debian_package_tars_match_mkfs_erofs() {
    let Some(erofs) = require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for pkg in debian::PACKAGES {
        let Some(tar) = debian::data_tar(pkg) else {
            return;
        };
        compare(&erofs, pkg, &tar, dir.path());
        compared += 1;
    }
    counted::compared(
        compared,
        debian::PACKAGES.len(),
        &format!(
            "Debian package trees identical to mkfs.erofs {}",
            erofs.version()
        ),
    );
}

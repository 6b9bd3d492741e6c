//! The root hash containerd's EROFS differ gives a layer when it is configured for
//! reproducible images as kata-deploy configures it (`mkfs_options = ["-T0",
//! "--mkfs-time", "--sort=none"]`): its exact `mkfs.erofs` invocation, the tar on stdin,
//! then its dm-verity layout (sha256, 4096/4096, hash type 1, 32 zero bytes of salt,
//! superblock at the end of the image) computed with our verity library.
//!
//! With containerd's default `mkfs_options` (none) the image records the time it was built
//! and its root hash is known only after the fact: nobody can predict it.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::error::{MkfsError, ReferenceError};
use super::mkfs::MkfsErofs;
use crate::verity::{FormatOptions, FormatReport, format_file};

/// kata-deploy's `mkfs_options` for the differ: no build times, input order kept.
pub const KATA_DEPLOY_MKFS_OPTIONS: [&str; 3] = ["-T0", "--mkfs-time", "--sort=none"];

/// What the root hash of the output depends on, said in every report.
pub const REPRODUCIBILITY_NOTE: &str = "containerd's root hashes are predictable only with \
    mkfs_options = [\"-T0\", \"--mkfs-time\", \"--sort=none\"] in the erofs differ's \
    configuration (as kata-deploy sets them) and the same erofs-utils version as the node; \
    with containerd's default options the image records its build time and its root hash \
    cannot be predicted";

/// Which of containerd's paths builds the layer's EROFS image; they differ in the digest
/// the image's UUID is derived from, and so in the bytes and the root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerdPath {
    /// The EROFS differ unpacking a pulled layer: the compressed layer digest.
    #[default]
    Differ,
    /// The layer content cache (`ctr images build-erofs-cache`) and the converter: the diff
    /// ID.
    Cache,
}

impl ContainerdPath {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Differ => "differ",
            Self::Cache => "cache",
        }
    }
}

/// The image UUID containerd passes with `-U`: version 5 in the URL namespace of
/// `erofs:blobs/<digest>`.
pub fn erofs_uuid(digest: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("erofs:blobs/{digest}").as_bytes(),
    )
}

/// containerd's `mkfs.erofs` arguments before the output path, with kata-deploy's options.
pub fn mkfs_args(uuid: &Uuid) -> Vec<String> {
    ["--tar=f", "--aufs", "--quiet", "-Enoinline_data", "-b4096"]
        .into_iter()
        .chain(KATA_DEPLOY_MKFS_OPTIONS)
        .map(str::to_owned)
        .chain(["-U".to_owned(), uuid.to_string()])
        .collect()
}

/// Which layer, for messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Which<'a> {
    pub index: usize,
    pub name: &'a str,
}

/// What building one layer gave.
#[derive(Debug)]
pub(super) struct Built {
    /// sha256 of the tar fed to mkfs.erofs (hex).
    pub diff_id_hex: String,
    pub verity: FormatReport,
}

/// Most bytes of mkfs.erofs's stderr kept for a message.
const STDERR_LIMIT: u64 = 64 * 1024;

/// Runs containerd's `mkfs.erofs` into `out` with the uncompressed tar `tar` on stdin (all
/// of it hashed, also what mkfs.erofs leaves unread after the end-of-archive blocks, as
/// containerd drains it), then appends containerd's dm-verity layout to `out`.
pub(super) fn build(
    mkfs: &MkfsErofs,
    uuid: &Uuid,
    tar: &mut dyn Read,
    out: &Path,
    which: Which<'_>,
) -> Result<Built, ReferenceError> {
    let mut cmd = mkfs.command();
    cmd.args(mkfs_args(uuid))
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let command = describe(&cmd);
    let mut child = cmd.spawn().map_err(|source| MkfsError::Start {
        command: command.clone(),
        source,
    })?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let (fed, stderr_text) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut text = String::new();
            if let Some(e) = stderr {
                let _ = e.take(STDERR_LIMIT).read_to_string(&mut text);
            }
            text
        });
        let fed = feed(tar, stdin);
        (fed, reader.join().unwrap_or_default())
    });
    let diff_id_hex = match fed {
        Ok(h) => h,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ReferenceError::Layer {
                index: which.index,
                name: which.name.to_owned(),
                reason: format!("cannot read the layer: {e}"),
            });
        }
    };
    let status = child.wait().map_err(|source| MkfsError::Start {
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        return Err(MkfsError::Failed {
            index: which.index,
            name: which.name.to_owned(),
            command,
            status: status.to_string(),
            stderr: stderr_text.trim().to_owned(),
        }
        .into());
    }
    let opts = FormatOptions {
        // containerd's superblock UUID is random; it is outside the root hash
        uuid: Some(Uuid::nil()),
        sidecar: false,
        pad: true,
        ..FormatOptions::containerd()
    };
    let verity = format_file(out, &opts, None).map_err(|e| ReferenceError::Verity {
        index: which.index,
        name: which.name.to_owned(),
        source: Box::new(e),
    })?;
    Ok(Built {
        diff_id_hex,
        verity,
    })
}

/// Copies `tar` to `stdin` (until mkfs.erofs closes it) and hashes all of `tar`.
fn feed(tar: &mut dyn Read, stdin: Option<std::process::ChildStdin>) -> io::Result<String> {
    let mut sink = stdin;
    let mut hash = Sha256::new();
    let mut buf = vec![0_u8; 1 << 20];
    loop {
        let n = match tar.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        if let Some(w) = sink.as_mut() {
            match w.write_all(&buf[..n]) {
                Ok(()) => {}
                // mkfs.erofs stopped reading (the end-of-archive blocks, or an error its
                // exit status reports): drain the rest for the hash
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => sink = None,
                Err(e) => return Err(e),
            }
        }
    }
    drop(sink);
    Ok(hex::encode(hash.finalize()))
}

/// `program arg…` for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_golden_vector() {
        // genpolicy's (microsoft/kata-containers src/tools/genpolicy/src/erofs.rs) and
        // containerd's `uuid.NewSHA1(uuid.NameSpaceURL, "erofs:blobs/"+digest)`
        assert_eq!(
            erofs_uuid("sha256:deadbeef").to_string(),
            "ebc0b188-5b2a-52e0-b4a0-21a192556101"
        );
    }

    #[test]
    fn containerd_arguments_in_order() {
        let u = erofs_uuid("sha256:deadbeef");
        assert_eq!(
            mkfs_args(&u).join(" "),
            "--tar=f --aufs --quiet -Enoinline_data -b4096 -T0 --mkfs-time --sort=none \
             -U ebc0b188-5b2a-52e0-b4a0-21a192556101"
        );
    }
}

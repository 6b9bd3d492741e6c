//! The fuzz harness of containerd's mount lists, in one place for the fuzz target and the
//! tests.
//!
//! `fuzz/fuzz_targets/containerd_mounts.rs` hands every input to [`run`], and so does
//! `host-agent/tests/fuzz_corpus.rs` for every file of the committed corpus, so `cargo test`
//! runs exactly the fuzz target's code. Not used by the agent itself.
//!
//! An input is the JSON text a runtime receives (read with [`parse_json`]), then checked
//! with [`parse`]. The oracle, checked on every input:
//! - nothing panics; every rejection is an `InvalidArgument` error, and one about an entry
//!   names an index inside the list;
//! - the entries serialised again with serde_json read back the same, and parse to the same
//!   result (or the same error);
//! - parsing is deterministic;
//! - an accepted list has at most one layer per entry, each layer's blob is absolute and is
//!   the `source` of the `erofs` entry at its `mount_index`, no entry is a layer twice, and a
//!   sidecar path is absolute.

use std::path::Path;

use layerpass_protocols::status::{HasKind, Kind};

use super::{ContainerdRootfs, LayerVerity, MountEntry, MountListError, parse, parse_json};

/// What one input came to (for tests that check a corpus reaches every stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The JSON read as a list of mounts.
    pub entries: bool,
    /// The list was accepted.
    pub accepted: bool,
    /// Layers of the accepted list.
    pub layers: usize,
}

/// A broken invariant: a bug in the parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A rejection that is not an `InvalidArgument` error, or names an index past the list.
    #[error("bad rejection: {0}")]
    Rejection(String),
    /// Serialising the entries and reading them back changes them or their result.
    #[error("the round trip changes {what}: {before} became {after}")]
    RoundTrip {
        /// What changed.
        what: &'static str,
        /// Before (debug form).
        before: String,
        /// After (debug form).
        after: String,
    },
    /// The same entries parsed twice gave different results.
    #[error("parse is not deterministic: {0}")]
    Nondeterministic(String),
    /// An accepted list that breaks a rule.
    #[error("accepted {rootfs}: {rule}")]
    Accepted {
        /// The result (debug form).
        rootfs: String,
        /// The rule it breaks.
        rule: String,
    },
}

fn check_error(e: &MountListError, len: usize) -> Result<(), Violation> {
    if e.kind() != Kind::InvalidArgument {
        return Err(Violation::Rejection(format!("{e} is {:?}", e.kind())));
    }
    match e.index() {
        Some(i) if i >= len => Err(Violation::Rejection(format!(
            "{e} names mount {i} of a list of {len}"
        ))),
        _ => Ok(()),
    }
}

/// Runs one input (JSON bytes) and checks the oracle.
pub fn run(input: &[u8]) -> Result<Outcome, Violation> {
    let mut outcome = Outcome::default();
    let entries = match parse_json(input) {
        Ok(entries) => entries,
        Err(e) => {
            // Before the entries are read, an entry's index is below the entry limit.
            check_error(&e, super::MAX_ENTRIES)?;
            return Ok(outcome);
        }
    };
    outcome.entries = true;
    let result = parse(&entries);

    let again = parse(&entries);
    if again != result {
        return Err(Violation::Nondeterministic(format!(
            "{result:?} then {again:?}"
        )));
    }

    let back = serde_json::to_vec(&entries)
        .map_err(|e| e.to_string())
        .and_then(|bytes| parse_json(&bytes).map_err(|e| e.to_string()));
    if back.as_ref() != Ok(&entries) {
        return Err(Violation::RoundTrip {
            what: "the entries",
            before: format!("{entries:?}"),
            after: format!("{back:?}"),
        });
    }
    let reparsed = parse(back.as_deref().unwrap_or_default());
    if reparsed != result {
        return Err(Violation::RoundTrip {
            what: "the result",
            before: format!("{result:?}"),
            after: format!("{reparsed:?}"),
        });
    }

    match result {
        Ok(rootfs) => {
            check_accepted(&entries, &rootfs)?;
            outcome.accepted = true;
            outcome.layers = rootfs.layers.len();
        }
        Err(e) => check_error(&e, entries.len())?,
    }
    Ok(outcome)
}

/// The rules an accepted list keeps, computed apart from the parser's own checks.
fn check_accepted(entries: &[MountEntry], rootfs: &ContainerdRootfs) -> Result<(), Violation> {
    let broken = |rule: String| Violation::Accepted {
        rootfs: format!("{rootfs:?}"),
        rule,
    };
    if rootfs.layers.is_empty() || rootfs.layers.len() > entries.len() {
        return Err(broken(format!(
            "{} layers from {} entries",
            rootfs.layers.len(),
            entries.len()
        )));
    }
    let mut seen = vec![false; entries.len()];
    for layer in &rootfs.layers {
        let Some(entry) = entries.get(layer.mount_index) else {
            return Err(broken(format!(
                "mount {} is past the list",
                layer.mount_index
            )));
        };
        if std::mem::replace(&mut seen[layer.mount_index], true) {
            return Err(broken(format!("mount {} is two layers", layer.mount_index)));
        }
        if entry.kind != "erofs" || Path::new(&entry.source) != layer.blob {
            return Err(broken(format!(
                "layer {} is not the erofs entry {entry:?}",
                layer.blob.display()
            )));
        }
        if !layer.blob.is_absolute() {
            return Err(broken(format!("blob {} is relative", layer.blob.display())));
        }
        if let LayerVerity::Sidecar(p) = &layer.verity
            && !p.is_absolute()
        {
            return Err(broken(format!("sidecar {} is relative", p.display())));
        }
    }
    Ok(())
}

/// The seeds of `fuzz/corpus/containerd_mounts/`: the shapes of
/// `containerd-kata-nerdbox.md` §5.2, §5.4 and §5.5.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    const R: &str = "/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots";
    let erofs = |id: u32| {
        format!(
            r#"{{"type":"erofs","source":"{R}/{id}/layer.erofs","options":["ro","loop","X-containerd.dmverity={R}/{id}/layer.erofs.dmverity"]}}"#
        )
    };
    let mkfs = format!(
        r#"{{"type":"mkfs/ext4","source":"{R}/7/rwlayer.img","options":["X-containerd.mkfs.fs=ext4","X-containerd.mkfs.size=21474836480","rw","loop"]}}"#
    );
    let ext4 = format!(r#"{{"type":"ext4","source":"{R}/7/rwlayer.img","options":["rw","loop"]}}"#);
    let block_overlay = r#"{"type":"format/mkdir/overlay","source":"overlay","options":["X-containerd.mkdir.path={{ mount 0 }}/upper:0755","X-containerd.mkdir.path={{ mount 0 }}/work:0755","workdir={{ mount 0 }}/work","upperdir={{ mount 0 }}/upper","lowerdir={{ overlay 1 3 }}"]}"#;
    let list = |items: &[&str]| format!("[{}]", items.join(",")).into_bytes();
    let (e1, e2, e3) = (erofs(1), erofs(2), erofs(3));
    let host_overlay = format!(
        r#"{{"type":"format/mkdir/overlay","source":"overlay","options":["workdir={R}/7/work","upperdir={R}/7/fs","lowerdir={{{{ overlay 0 1 }}}}","index=off"]}}"#
    );
    vec![
        ("seed-single-layer", list(&[&e1])),
        (
            "seed-view",
            list(&[
                &e3,
                &e2,
                &e1,
                r#"{"type":"format/mkdir/overlay","source":"overlay","options":["lowerdir={{ overlay 0 2 }}"]}"#,
            ]),
        ),
        ("seed-host-dirs", list(&[&e2, &e1, &host_overlay])),
        (
            "seed-block-mkfs",
            list(&[&mkfs, &e3, &e2, &e1, block_overlay]),
        ),
        (
            "seed-block-activated",
            list(&[&ext4, &e3, &e2, &e1, block_overlay]),
        ),
        (
            "seed-bind-one-layer",
            list(&[
                &e1,
                r#"{"type":"format/bind","source":"{{ mount 0 }}","options":["ro","rbind"]}"#,
            ]),
        ),
    ]
}

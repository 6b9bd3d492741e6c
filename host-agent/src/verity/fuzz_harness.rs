//! The fuzz harness of a layer's dm-verity metadata, in one place for the fuzz target and
//! the tests.
//!
//! `fuzz/fuzz_targets/verity_metadata.rs` hands every input to [`run`], and so does
//! `host-agent/tests/fuzz_corpus.rs` for every file of the committed corpus, so `cargo test`
//! runs exactly the fuzz target's code. Not used by the agent itself.
//!
//! An input is what the plan builder reads from a layer's files ([`crate::plan::layer_mapping`]):
//!
//! | bytes        | what                                                              |
//! |--------------|-------------------------------------------------------------------|
//! | 0            | bit 0: the tree is a separate file (else appended to the blob)     |
//! | 1..9         | the blob's length (little-endian, below 2^48 like a real file)    |
//! | 9..17        | the tree file's length (the same)                                  |
//! | 17..529      | the veritysetup superblock ([`Superblock::parse`])                 |
//! | 529..        | the `.dmverity` sidecar ([`Sidecar::parse`])                       |
//!
//! Missing bytes are zero. The superblock counts as there when it has the signature (and,
//! appended, when the blob reaches past it), as [`crate::plan::layer_mapping`] reads it. The
//! oracle, checked on every input:
//! - nothing panics; every rejection is an `InvalidArgument` error;
//! - a parsed superblock and a parsed sidecar come back the same from their own bytes;
//! - an accepted mapping passes the guest's validation, its data lies inside the blob's data
//!   and its tree after the data and inside the disk.

use std::path::Path;

use layerpass_protocols::status::{HasKind, Kind};

use super::{Geometry, HashType, SUPERBLOCK_SIZE, Sidecar, Superblock, VerityParams};
use crate::export::layer::LAYER_ALIGN;
use crate::plan::{Found, mapping};

/// Where the superblock starts in an input.
pub const SUPERBLOCK_AT: usize = 17;
/// Where the sidecar starts in an input.
pub const SIDECAR_AT: usize = SUPERBLOCK_AT + SUPERBLOCK_SIZE;
/// File lengths are taken modulo this (2^48 bytes: no real file is longer).
pub const MAX_FILE_LEN: u64 = 1 << 48;

/// What one input came to (for tests that check a corpus reaches every stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The superblock parsed.
    pub superblock: bool,
    /// The sidecar parsed.
    pub sidecar: bool,
    /// The plan's verity mapping was accepted.
    pub mapping: bool,
}

/// A broken invariant: a bug in a parser or in the mapping's checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A rejection that is not an `InvalidArgument` error.
    #[error("{what} rejected as {kind:?}, not InvalidArgument: {message}")]
    Kind {
        /// What was parsed.
        what: &'static str,
        /// The error's kind.
        kind: Kind,
        /// The error.
        message: String,
    },
    /// A parsed value that does not come back the same from its own bytes.
    #[error("{what} does not survive the round trip: {value} came back as {back}")]
    RoundTrip {
        /// What was parsed.
        what: &'static str,
        /// The parsed value (debug form).
        value: String,
        /// What came back, or why nothing did.
        back: String,
    },
    /// An accepted mapping that breaks a rule.
    #[error("accepted mapping {mapping}: {rule}")]
    Mapping {
        /// The mapping (debug form).
        mapping: String,
        /// The rule it breaks.
        rule: String,
    },
}

fn kind_of<E: HasKind + std::fmt::Display>(what: &'static str, e: &E) -> Result<(), Violation> {
    if e.kind() == Kind::InvalidArgument {
        Ok(())
    } else {
        Err(Violation::Kind {
            what,
            kind: e.kind(),
            message: e.to_string(),
        })
    }
}

fn u64_at(input: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = input.get(at..) {
        let n = src.len().min(8);
        b[..n].copy_from_slice(&src[..n]);
    }
    u64::from_le_bytes(b)
}

/// Runs one input (see the module's documentation) and checks the oracle.
pub fn run(input: &[u8]) -> Result<Outcome, Violation> {
    let path = Path::new("fuzz.erofs");
    let mut outcome = Outcome::default();
    let separate = input.first().is_some_and(|b| b & 1 == 1);
    let blob_len = u64_at(input, 1) % MAX_FILE_LEN;
    let tree_len = u64_at(input, 9) % MAX_FILE_LEN;
    let mut sb_bytes = [0u8; SUPERBLOCK_SIZE];
    if let Some(src) = input.get(SUPERBLOCK_AT..) {
        let n = src.len().min(SUPERBLOCK_SIZE);
        sb_bytes[..n].copy_from_slice(&src[..n]);
    }
    let side_bytes = input.get(SIDECAR_AT..).unwrap_or_default();

    let superblock = match Superblock::parse(&sb_bytes, path, 0) {
        Ok(sb) => {
            outcome.superblock = true;
            let back = Superblock::parse(&sb.to_bytes(), path, 0);
            if back.as_ref().ok() != Some(&sb) {
                return Err(Violation::RoundTrip {
                    what: "superblock",
                    value: format!("{sb:?}"),
                    back: format!("{back:?}"),
                });
            }
            Some(sb)
        }
        Err(e) => {
            kind_of("superblock", &e)?;
            None
        }
    };
    let sidecar = match Sidecar::parse(side_bytes, path) {
        Ok(s) => s,
        Err(e) => {
            kind_of("sidecar", &e)?;
            return Ok(outcome);
        }
    };
    outcome.sidecar = true;
    let back = serde_json::to_vec(&sidecar)
        .map_err(|e| e.to_string())
        .and_then(|b| Sidecar::parse(&b, path).map_err(|e| e.to_string()));
    if back.as_ref() != Ok(&sidecar) {
        return Err(Violation::RoundTrip {
            what: "sidecar",
            value: format!("{sidecar:?}"),
            back: format!("{back:?}"),
        });
    }

    // What `layer_mapping` would read: a superblock where the file reaches past one and
    // it has the signature; a signature with a bad superblock behind it stops there with
    // the superblock's error (checked above).
    let readable = match separate {
        true => tree_len >= SUPERBLOCK_SIZE as u64,
        false => sidecar
            .hashoffset
            .checked_add(SUPERBLOCK_SIZE as u64)
            .is_some_and(|end| end <= blob_len),
    };
    let superblock = match (readable && sb_bytes.starts_with(b"verity\0\0"), superblock) {
        (false, _) => None,
        (true, Some(sb)) => Some(sb),
        (true, None) => return Ok(outcome),
    };
    let found = Found {
        sidecar,
        blob_len,
        tree_len: separate.then_some(tree_len),
        superblock,
    };
    match mapping(path, &found) {
        Ok(m) => {
            outcome.mapping = true;
            check_mapping(&found, &m)?;
        }
        Err(e) => kind_of("mapping", &e)?,
    }
    Ok(outcome)
}

/// The rules an accepted mapping keeps, computed apart from `mapping`'s own checks.
fn check_mapping(found: &Found, m: &layerpass_types::VerityMapping) -> Result<(), Violation> {
    let broken = |rule: String| Violation::Mapping {
        mapping: format!("{m:?}"),
        rule,
    };
    m.validate()
        .map_err(|e| broken(format!("the guest refuses it: {e}")))?;
    let data_end = m
        .data_blocks
        .checked_mul(u64::from(m.data_block_size))
        .ok_or_else(|| broken("the data's end overflows".into()))?;
    let (data_limit, disk_end) = match found.tree_len {
        None => (found.sidecar.hashoffset, found.blob_len),
        Some(tree_len) => (
            found.blob_len,
            found.blob_len.div_ceil(LAYER_ALIGN) * LAYER_ALIGN + tree_len,
        ),
    };
    if data_end > data_limit {
        return Err(broken(format!(
            "the data ends at {data_end}, past {data_limit}"
        )));
    }
    let params = VerityParams {
        algorithm: m.algorithm,
        hash_type: HashType::from_number(u64::from(m.format)).map_err(|e| broken(e.to_string()))?,
        data_block_size: m.data_block_size,
        hash_block_size: m.hash_block_size,
        salt: super::Salt::new(m.salt.clone()).map_err(|e| broken(e.to_string()))?,
    };
    let geometry = Geometry::new(&params, m.data_blocks).map_err(|e| broken(e.to_string()))?;
    let tree_start = m
        .hash_start_block
        .checked_mul(u64::from(m.hash_block_size))
        .ok_or_else(|| broken("the tree's start overflows".into()))?;
    let tree_end = tree_start
        .checked_add(geometry.tree_bytes())
        .ok_or_else(|| broken("the tree's end overflows".into()))?;
    if tree_start < data_end || tree_end > disk_end {
        return Err(broken(format!(
            "the tree spans {tree_start}..{tree_end}: not after the data (ends at \
             {data_end}) and inside the disk (ends at {disk_end})"
        )));
    }
    Ok(())
}

/// The seeds of `fuzz/corpus/verity_metadata/`: what `layerpass convert` writes (the tree
/// appended, with a superblock), containerd's layout without a superblock, and a separate
/// tree file.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sb = Superblock {
        params: VerityParams::containerd(),
        data_blocks: 4,
        uuid: uuid::Uuid::from_u128(1),
    };
    let side = |hashoffset: u64| {
        format!(
            "{{\"roothash\":\"{}\",\"hashoffset\":{hashoffset}}}",
            "ab".repeat(32)
        )
    };
    let input =
        |separate: bool, blob_len: u64, tree_len: u64, sb: Option<&Superblock>, hashoffset| {
            let mut v = vec![u8::from(separate)];
            v.extend_from_slice(&blob_len.to_le_bytes());
            v.extend_from_slice(&tree_len.to_le_bytes());
            v.extend_from_slice(&sb.map_or([0u8; SUPERBLOCK_SIZE], Superblock::to_bytes));
            v.extend_from_slice(side(hashoffset).as_bytes());
            v
        };
    vec![
        (
            "seed-appended",
            input(false, 6 * 4096, 0, Some(&sb), 4 * 4096),
        ),
        ("seed-containerd", input(false, 5 * 4096, 0, None, 4 * 4096)),
        (
            "seed-tree-file",
            input(true, 4 * 4096, 2 * 4096, Some(&sb), 0),
        ),
    ]
}

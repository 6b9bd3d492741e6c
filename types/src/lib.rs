//! The host↔guest contract of layerpass, with no I/O: one definition, used by both agents,
//! of
//!
//! - [`Digest`]: content digests (`sha256:`/`sha512:` + lower-case hex), one strict parser;
//! - [`HashAlgorithm`] and [`RootHash`]: dm-verity's hash and the root of a tree;
//! - [`VerityMapping`]: the dm-verity parameters of a layer on a disk, with the one
//!   [`VerityMapping::validate`] both agents run;
//! - [`envelope`]: what the host can *format* versus what can be *exported to a guest*;
//! - [`naming`]: container ids, virtio-blk serials, GPT partition names (`lp-<32 hex>`)
//!   and the composite disk's serial;
//! - [`LayerId`]: a layer is identified by its root hash, its diff ID carried when known;
//! - [`reference_values`]: the root hashes (optionally bound to digests) a layer may have;
//! - [`initdata`]: CoCo initdata documents (the reference values' measured path into a
//!   guest), their digest and its forms in each TEE;
//! - [`attest`]: what the guest measures per layer (canonical JSON, AAEL events) and the
//!   attestation agent's event log format.

pub mod attest;
pub mod digest;
pub mod envelope;
pub mod error;
pub mod hash;
pub mod initdata;
pub mod layer;
pub mod naming;
pub mod reference_values;
pub mod run;
pub mod verity;

pub use digest::{Digest, DigestAlgorithm};
pub use error::TypeError;
pub use hash::{HashAlgorithm, RootHash};
pub use layer::LayerId;
pub use reference_values::ReferenceValues;
pub use verity::{CorruptionMode, VerityMapping};

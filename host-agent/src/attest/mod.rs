//! Attestation on the host, without running one: reference values computed from an image
//! alone ([`reference`], as layerpass or containerd's EROFS differ builds the layers), and
//! written as the guest agent's reference values, JSON or a CoCo initdata document
//! ([`render`]). See docs/attestation.md.

pub mod containerd;
mod error;
pub mod mkfs;
pub mod reference;
pub mod render;
mod source;

pub use error::{MkfsError, ReferenceError};

//! Attestation on the host and offline: reference values computed from an image alone
//! ([`reference`], as layerpass or containerd's EROFS differ builds the layers) and written
//! as the guest agent's reference values, JSON or a CoCo initdata document ([`render`]);
//! checking the evidence a guest produced (its event log and the register it was extended
//! into) against reference values ([`verify`]). See docs/attestation.md.

pub mod containerd;
mod error;
pub mod mkfs;
pub mod reference;
pub mod render;
mod source;
pub mod verify;

pub use error::{MkfsError, ReferenceError};

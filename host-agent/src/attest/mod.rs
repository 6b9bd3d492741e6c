//! Attestation on the host and offline: checking the evidence a guest produced (its
//! event log and the register it was extended into) against reference values.

pub mod verify;

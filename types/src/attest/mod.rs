//! Attestation: what the guest measures for each layer it mounts, as the CoCo attestation
//! agent records runtime measurements (its "AAEL" events), and the agent's event log file.
//!
//! - [`LayerMeasurement`]: one layer of one container, whose canonical JSON (RFC 8785) is
//!   the event's content;
//! - [`Event`]: `<domain> <operation> <content>`, its TCG tagged-event bytes and the SHA-256
//!   digest that is extended into the register;
//! - [`eventlog`]: the attestation agent's log file (TCG2 crypto-agile entries of type
//!   `EV_EVENT_TAG`), written by the guest's TPM backend and read by the verifier.
//!
//! `docs/attestation.md` records the format as the attestation agent writes it.

pub mod error;
pub mod eventlog;
pub mod fuzz_harness;
mod jcs;
mod measurement;

use sha2::{Digest as _, Sha256};

pub use error::AttestError;
pub use jcs::MAX_SAFE_INTEGER;
pub use measurement::{LayerMeasurement, MAX_CONTENT_LEN, corruption_name};

/// The domain of layerpass's events (a URI without a scheme, as the CoCo domain
/// `github.com/confidential-containers` is).
pub const DOMAIN: &str = "github.com/layerpass";

/// The tagged-event id of an attestation-agent event: the ASCII of `"AAEL"` read as a
/// big-endian number, written little-endian (bytes `4c 45 41 41`).
pub const AAEL_TAGGED_EVENT_ID: u32 = 0x4141_454c;

/// What happened to a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The layer was mounted for a container (recorded before the mount returns).
    MountLayer,
    /// The layer was unmounted.
    UnmountLayer,
}

impl Operation {
    /// The operation's name in an event.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MountLayer => "MountLayer",
            Self::UnmountLayer => "UnmountLayer",
        }
    }

    /// The operation named `s` (exactly).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::MountLayer, Self::UnmountLayer]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One runtime-measurement event as the attestation agent records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Who defines the operation (no whitespace).
    pub domain: String,
    /// What happened (no whitespace).
    pub operation: String,
    /// The details (no line feed).
    pub content: String,
}

impl Event {
    /// The event of `op` on the layer `m`: [`DOMAIN`], the operation's name and the
    /// measurement's canonical JSON.
    #[must_use]
    pub fn layer(op: Operation, m: &LayerMeasurement) -> Self {
        Self {
            domain: DOMAIN.to_owned(),
            operation: op.as_str().to_owned(),
            content: m.canonical_json(),
        }
    }

    /// `"<domain> <operation> <content>"`: the text the attestation agent logs.
    #[must_use]
    pub fn text(&self) -> String {
        format!("{} {} {}", self.domain, self.operation, self.content)
    }

    /// Reads an event text as the attestation agent does: the domain up to the first space,
    /// the operation up to the second, the content after it; the domain and the operation
    /// must not be empty, the content must not hold a line feed.
    ///
    /// # Errors
    /// [`AttestError::BadEventText`] naming the rule.
    pub fn from_text(text: &str) -> Result<Self, AttestError> {
        let bad = |m: &str| AttestError::BadEventText(m.to_owned());
        let (domain, rest) = text
            .split_once(' ')
            .ok_or_else(|| bad("no space after the domain"))?;
        let (operation, content) = rest
            .split_once(' ')
            .ok_or_else(|| bad("no space after the operation"))?;
        if domain.is_empty() || operation.is_empty() {
            return Err(bad("empty domain or operation"));
        }
        if content.contains('\n') {
            return Err(bad("the content holds a line feed"));
        }
        Ok(Self {
            domain: domain.to_owned(),
            operation: operation.to_owned(),
            content: content.to_owned(),
        })
    }

    /// The event data of its TCG entry, a `TaggedEvent`: the id [`AAEL_TAGGED_EVENT_ID`]
    /// (u32, little-endian), the text's length (u32, little-endian), the text.
    #[must_use]
    pub fn event_data(&self) -> Vec<u8> {
        let text = self.text();
        let mut out = Vec::with_capacity(8 + text.len());
        out.extend_from_slice(&AAEL_TAGGED_EVENT_ID.to_le_bytes());
        // An event text longer than 4 GiB cannot be built from a valid measurement; its
        // length is cut as the attestation agent's `as u32` would.
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// The digest extended into the register: SHA-256 of [`Self::event_data`].
    #[must_use]
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.event_data()).into()
    }
}

#[cfg(test)]
mod tests;

//! [`LayerMeasurement`]: the content of one layerpass event, its canonical JSON and its one
//! validation.

use serde::Deserialize;

use super::AttestError;
use super::jcs::{self, MAX_SAFE_INTEGER, Value};
use crate::naming::validate_container_id;
use crate::{CorruptionMode, Digest, HashAlgorithm};

/// Longest content [`LayerMeasurement::from_content`] reads. A valid measurement is at most
/// about 700 bytes (a 128-character container id, a sha512 digest and root hash, a 256-byte
/// salt in hex).
pub const MAX_CONTENT_LEN: usize = 2048;

/// Longest salt in bytes (veritysetup's superblock field).
const MAX_SALT_BYTES: usize = crate::envelope::MAX_SALT_LEN;

/// What is measured for one layer of one container (the content of its AAEL event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMeasurement {
    /// The container the layer is mounted for.
    pub container_id: String,
    /// The layer's diff ID (`sha256:<hex>`) when known.
    pub digest: Option<String>,
    /// The dm-verity root hash, lower-case hex.
    pub root_hash: String,
    /// dm-verity's hash: `sha256`, `sha512` or `sha1`.
    pub hash_algorithm: String,
    /// The salt in lower-case hex (empty: no salt).
    pub salt: String,
    /// Bytes of data dm-verity verifies (data blocks × data block size).
    pub data_size: u64,
    /// What a corrupted block does: `eio`, `restart_on_corruption` or `panic_on_corruption`.
    pub corruption: String,
}

/// The JSON shape, read strictly (every member required, no others).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    container_id: String,
    digest: Option<String>,
    root_hash: String,
    hash_algorithm: String,
    salt: String,
    data_size: u64,
    corruption: String,
}

/// The name of a corruption mode as a measurement (and the kernel's verity table) spells it.
#[must_use]
pub const fn corruption_name(mode: CorruptionMode) -> &'static str {
    match mode {
        CorruptionMode::Eio => "eio",
        CorruptionMode::Restart => "restart_on_corruption",
        CorruptionMode::Panic => "panic_on_corruption",
    }
}

fn field_err(field: &'static str, value: &str, reason: impl Into<String>) -> AttestError {
    let mut value = value.to_owned();
    if value.len() > 200 {
        let mut cut = 200;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    AttestError::Field {
        field,
        value,
        reason: reason.into(),
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl LayerMeasurement {
    /// The content of the event: RFC 8785 canonical JSON, members sorted (`container_id`,
    /// `corruption`, `data_size`, `digest`, `hash_algorithm`, `root_hash`, `salt`), no
    /// whitespace, `digest` `null` when unknown.
    ///
    /// Infallible: any strings are escaped as RFC 8785 says, and RFC 8785 leaves non-ASCII
    /// characters unescaped. Whether the text is fit for an event (printable ASCII, no line
    /// feed, a `data_size` JSON numbers hold exactly) is [`Self::validate`]'s question: it
    /// accepts only fields whose canonical text needs no escape at all.
    #[must_use]
    pub fn canonical_json(&self) -> String {
        let digest = self.digest.as_deref().map_or(Value::Null, Value::Str);
        jcs::object(&[
            ("container_id", Value::Str(&self.container_id)),
            ("digest", digest),
            ("root_hash", Value::Str(&self.root_hash)),
            ("hash_algorithm", Value::Str(&self.hash_algorithm)),
            ("salt", Value::Str(&self.salt)),
            ("data_size", Value::Int(self.data_size)),
            ("corruption", Value::Str(&self.corruption)),
        ])
    }

    /// Checks every field: a valid container id (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128
    /// characters), a strict digest if any, a known hash algorithm (lower case), a root hash
    /// of that algorithm's length in lower-case hex, a salt of whole bytes in lower-case hex
    /// (at most 256 bytes), a data size of at most 2^53 − 1, a known corruption mode. So a
    /// valid measurement's canonical text is printable ASCII without `"` or `\` inside its
    /// strings, without line feeds, and reads back exactly.
    ///
    /// # Errors
    /// [`AttestError::Field`] naming the member and its rule.
    pub fn validate(&self) -> Result<(), AttestError> {
        validate_container_id(&self.container_id)
            .map_err(|e| field_err("container_id", &self.container_id, e.to_string()))?;
        if let Some(d) = &self.digest {
            Digest::parse(d).map_err(|e| field_err("digest", d, e.to_string()))?;
        }
        let algorithm = match self.hash_algorithm.as_str() {
            "sha256" => HashAlgorithm::Sha256,
            "sha512" => HashAlgorithm::Sha512,
            "sha1" => HashAlgorithm::Sha1,
            other => {
                return Err(field_err(
                    "hash_algorithm",
                    other,
                    "is not sha256, sha512 or sha1",
                ));
            }
        };
        let hex_len = algorithm.digest_size() * 2;
        if self.root_hash.len() != hex_len || !is_lower_hex(&self.root_hash) {
            return Err(field_err(
                "root_hash",
                &self.root_hash,
                format!("is not {hex_len} lower-case hex digits ({algorithm})"),
            ));
        }
        if !self.salt.len().is_multiple_of(2)
            || self.salt.len() > MAX_SALT_BYTES * 2
            || !is_lower_hex(&self.salt)
        {
            return Err(field_err(
                "salt",
                &self.salt,
                format!(
                    "is not an even number of lower-case hex digits, at most {MAX_SALT_BYTES} bytes"
                ),
            ));
        }
        if self.data_size > MAX_SAFE_INTEGER {
            return Err(field_err(
                "data_size",
                &self.data_size.to_string(),
                "is larger than 2^53 - 1, which JSON numbers do not hold exactly",
            ));
        }
        if !matches!(
            self.corruption.as_str(),
            "eio" | "restart_on_corruption" | "panic_on_corruption"
        ) {
            return Err(field_err(
                "corruption",
                &self.corruption,
                "is not eio, restart_on_corruption or panic_on_corruption",
            ));
        }
        Ok(())
    }

    /// Reads an event's content strictly: at most [`MAX_CONTENT_LEN`] bytes, a JSON object
    /// with exactly the seven members, valid ([`Self::validate`]), and byte for byte its own
    /// canonical text (so key order, whitespace, escapes and number forms cannot vary and
    /// one measurement has one content, one digest).
    ///
    /// # Errors
    /// [`AttestError`] naming what is wrong.
    pub fn from_content(content: &str) -> Result<Self, AttestError> {
        if content.len() > MAX_CONTENT_LEN {
            return Err(AttestError::ContentTooLong {
                len: content.len(),
                max: MAX_CONTENT_LEN,
            });
        }
        let wire: Wire =
            serde_json::from_str(content).map_err(|e| AttestError::NotJson(e.to_string()))?;
        let m = Self {
            container_id: wire.container_id,
            digest: wire.digest,
            root_hash: wire.root_hash,
            hash_algorithm: wire.hash_algorithm,
            salt: wire.salt,
            data_size: wire.data_size,
            corruption: wire.corruption,
        };
        m.validate()?;
        let expected = m.canonical_json();
        if expected != content {
            return Err(AttestError::NotCanonical { expected });
        }
        Ok(m)
    }
}

#[cfg(test)]
pub(crate) mod tests;

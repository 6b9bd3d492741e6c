//! CoCo initdata (trustee `kbs/docs/initdata.md`): a TOML document
//!
//! ```toml
//! version = "0.1.0"
//! algorithm = "sha256"   # or sha384, sha512
//!
//! [data]
//! "aa.toml" = '''...'''
//! "layerpass.toml" = '''...'''
//! ```
//!
//! that Kata hands to the guest (annotation `io.katacontainers.config.hypervisor.cc_init_data`,
//! written to [`KATA_PATH`]) and whose digest the platform binds to the TEE: SNP HOSTDATA,
//! TDX MRCONFIGID, CCA personalization value, or TPM PCR 8 extended by the attestation
//! agent. layerpass keeps the guest agent's reference values under [`LAYERPASS_KEY`].
//!
//! The digest is the document's `algorithm` over the **raw bytes** as written (no
//! canonicalisation), exactly as the attestation agent and Kata compute it: `sha256sum`
//! of the file gives the same value. [`TeeField`] gives the forms it takes in each TEE's
//! field. Parsing is bounded ([`MAX_BYTES`]) and strict: version `0.1.0`, one of the three
//! algorithms, string values under `[data]`, no other top-level keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// The only initdata version the specification (and Kata and the attestation agent) know.
pub const VERSION: &str = "0.1.0";
/// The largest initdata document read: far above the reference values of hundreds of
/// layers, far below what could exhaust a guest's memory.
pub const MAX_BYTES: usize = 1 << 20;
/// layerpass's key under `[data]`: the guest agent's reference-values TOML.
pub const LAYERPASS_KEY: &str = "layerpass.toml";
/// The attestation agent's configuration under `[data]` (Kata writes it to `aa.toml`
/// beside [`KATA_PATH`] and starts the agent with `-c`).
pub const AA_KEY: &str = "aa.toml";
/// Where the Kata agent writes the whole document in the guest.
pub const KATA_PATH: &str = "/run/confidential-containers/initdata/initdata.toml";

/// The digest algorithm an initdata document names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitdataAlgorithm {
    /// SHA-256: the only one a TPM PCR 8 binding accepts.
    #[default]
    Sha256,
    /// SHA-384: TDX's MRCONFIGID width.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl InitdataAlgorithm {
    /// Every algorithm.
    pub const ALL: [Self; 3] = [Self::Sha256, Self::Sha384, Self::Sha512];

    /// The name as the document spells it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Digest size in bytes.
    #[must_use]
    pub const fn digest_size(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The hash of `bytes`.
    #[must_use]
    pub fn hash(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

impl fmt::Display for InitdataAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InitdataAlgorithm {
    type Err = InitdataError;

    /// `sha256`, `sha384` or `sha512`, exactly (Kata compares the string as written).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| InitdataError::Algorithm(s.to_owned()))
    }
}

/// Why an initdata document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitdataError {
    /// Larger than [`MAX_BYTES`].
    #[error("initdata of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Bytes given.
        size: usize,
        /// [`MAX_BYTES`].
        limit: usize,
    },
    /// Not UTF-8 text.
    #[error("initdata is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Not TOML, or not the initdata shape (the decoder's message, with the line).
    #[error("initdata is not a valid initdata TOML document: {0}")]
    Toml(String),
    /// A version other than [`VERSION`].
    #[error("initdata version {0:?} is not supported (only \"0.1.0\")")]
    Version(String),
    /// An algorithm other than sha256, sha384 or sha512.
    #[error("initdata algorithm {0:?} is not supported (sha256, sha384 or sha512)")]
    Algorithm(String),
    /// A key the reader needs is not under `[data]`.
    #[error("initdata has no {0:?} under [data]")]
    MissingKey(String),
}

/// The document as TOML lays it out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: String,
    algorithm: String,
    data: BTreeMap<String, String>,
}

/// A parsed, validated initdata document and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initdata {
    algorithm: InitdataAlgorithm,
    data: BTreeMap<String, String>,
    digest: Vec<u8>,
}

impl Initdata {
    /// Parses `raw` (the document's bytes exactly as the TEE binding hashes them) and
    /// computes its digest.
    ///
    /// # Errors
    /// When `raw` is too large, not UTF-8, not TOML of the initdata shape, or names another
    /// version or algorithm.
    pub fn parse(raw: &[u8]) -> Result<Self, InitdataError> {
        if raw.len() > MAX_BYTES {
            return Err(InitdataError::TooLarge {
                size: raw.len(),
                limit: MAX_BYTES,
            });
        }
        let text = std::str::from_utf8(raw).map_err(|e| InitdataError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let doc: Document =
            toml::from_str(text).map_err(|e| InitdataError::Toml(e.to_string().trim().into()))?;
        if doc.version != VERSION {
            return Err(InitdataError::Version(doc.version));
        }
        let algorithm: InitdataAlgorithm = doc.algorithm.parse()?;
        Ok(Self {
            algorithm,
            data: doc.data,
            digest: algorithm.hash(raw),
        })
    }

    /// The algorithm the document names.
    #[must_use]
    pub fn algorithm(&self) -> InitdataAlgorithm {
        self.algorithm
    }

    /// Everything under `[data]`.
    #[must_use]
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.data
    }

    /// The value of `key` under `[data]`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// The value of `key` under `[data]`, or [`InitdataError::MissingKey`].
    ///
    /// # Errors
    /// When the key is absent.
    pub fn require(&self, key: &str) -> Result<&str, InitdataError> {
        self.get(key)
            .ok_or_else(|| InitdataError::MissingKey(key.to_owned()))
    }

    /// The digest of the raw document under its algorithm.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// `<algorithm>:<hex>` of [`Self::digest`], for logs and reports.
    #[must_use]
    pub fn digest_string(&self) -> String {
        format!("{}:{}", self.algorithm, hex::encode(&self.digest))
    }
}

/// The digest of an initdata document: `algorithm` over the raw bytes.
#[must_use]
pub fn digest(raw: &[u8], algorithm: InitdataAlgorithm) -> Vec<u8> {
    algorithm.hash(raw)
}

/// Where a TEE holds the initdata digest, and in which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TeeField {
    /// AMD SEV-SNP `HOST_DATA`: 32 bytes.
    SnpHostData,
    /// Intel TDX `MRCONFIGID`: 48 bytes.
    TdxMrConfigId,
    /// Arm CCA personalization value: 64 bytes.
    CcaPersonalization,
    /// TPM or vTPM: the attestation agent extends PCR 8 (SHA-256 bank) once with the
    /// digest, which must be 32 bytes (its `extend_pcr` refuses others).
    TpmPcr8,
}

impl TeeField {
    /// Every field.
    pub const ALL: [Self; 4] = [
        Self::SnpHostData,
        Self::TdxMrConfigId,
        Self::CcaPersonalization,
        Self::TpmPcr8,
    ];

    /// A short name for reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SnpHostData => "snp.host_data",
            Self::TdxMrConfigId => "tdx.mrconfigid",
            Self::CcaPersonalization => "cca.personalization_value",
            Self::TpmPcr8 => "tpm.pcr8",
        }
    }

    /// The value the field holds for `digest`: for SNP, TDX and CCA the digest truncated
    /// or zero-padded at the end to the field's width (Kata's `adjust_digest`); for PCR 8
    /// the register after one SHA-256 extend from zeros. `Err` says why there is none.
    ///
    /// # Errors
    /// For PCR 8 when `digest` is not 32 bytes (not a sha256 document).
    pub fn value(self, digest: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::SnpHostData => Ok(adjust(digest, 32)),
            Self::TdxMrConfigId => Ok(adjust(digest, 48)),
            Self::CcaPersonalization => Ok(adjust(digest, 64)),
            Self::TpmPcr8 => pcr8_after_extend(digest)
                .map(|v| v.to_vec())
                .ok_or_else(|| {
                    format!(
                        "a {}-byte digest cannot be extended into a SHA-256 PCR: the attestation \
                     agent's TPM attesters accept only sha256 initdata",
                        digest.len()
                    )
                }),
        }
    }
}

/// `digest` truncated at the end, or zero-padded at the end, to `len` bytes.
#[must_use]
pub fn adjust(digest: &[u8], len: usize) -> Vec<u8> {
    let mut v = digest.get(..len).unwrap_or(digest).to_vec();
    v.resize(len, 0);
    v
}

/// PCR 8's SHA-256 value after one extend with `digest` from a reset register:
/// `sha256(32 zero bytes ‖ digest)`; `None` unless `digest` is 32 bytes.
#[must_use]
pub fn pcr8_after_extend(digest: &[u8]) -> Option<[u8; 32]> {
    if digest.len() != 32 {
        return None;
    }
    let mut h = Sha256::new();
    h.update([0_u8; 32]);
    h.update(digest);
    Some(h.finalize().into())
}

/// Writes an initdata document: `version`, `algorithm`, then `[data]` with each value as a
/// multi-line literal string where TOML allows one (embedded TOML stays readable), else
/// as an escaped basic string. [`Initdata::parse`] of the result gives back `data`.
#[must_use]
pub fn render(algorithm: InitdataAlgorithm, data: &BTreeMap<String, String>) -> String {
    let mut out = format!("version = \"{VERSION}\"\nalgorithm = \"{algorithm}\"\n\n[data]\n");
    for (key, value) in data {
        out.push_str(&basic_string(key));
        out.push_str(" = ");
        match literal_multiline(value) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&basic_string(value)),
        }
        out.push('\n');
    }
    out
}

/// `'''\n<value>'''` when `value` can be one: no `'''`, no control characters but tab and
/// newline, not ending in a quote.
fn literal_multiline(value: &str) -> Option<String> {
    let allowed = |c: char| c == '\t' || c == '\n' || !c.is_control();
    if value.contains("'''") || value.ends_with('\'') || !value.chars().all(allowed) {
        return None;
    }
    Some(format!("'''\n{value}'''"))
}

/// A TOML basic string (`"..."`) with everything that needs it escaped.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;

//! Policy, checked for the whole plan before anything is created: `require_verity`
//! refuses layers without dm-verity; reference values refuse root hashes they do not list
//! (and, where they list digests for a root hash, any other digest).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use layerpass_protocols::status::Kind;
use serde::Deserialize;

use crate::error::{AgentError, Step};
use crate::plan::{MountPlan, UpperSpec, validate_digest};

pub mod initdata;

/// Root hashes a layer may have, optionally bound to layer digests. Loaded from TOML:
///
/// ```toml
/// # any digest may use these root hashes
/// root_hashes = ["3f5a...", "9c1e..."]
///
/// # this root hash only for this digest
/// [[layers]]
/// root_hash = "d56e..."
/// digest = "sha256:0b1c..."
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    /// root hash (lowercase hex) → digests it is bound to (`None`: any digest).
    allowed: HashMap<String, Option<BTreeSet<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefFile {
    #[serde(default)]
    root_hashes: Vec<String>,
    #[serde(default)]
    layers: Vec<RefLayer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefLayer {
    root_hash: String,
    digest: Option<String>,
}

fn config_err(message: String) -> AgentError {
    AgentError::new(Kind::InvalidArgument, Step::Config, message)
}

fn check_root_hash(origin: &str, hash: &str) -> Result<String, AgentError> {
    let lower = hash.to_ascii_lowercase();
    let ok = matches!(lower.len(), 40 | 64 | 128) && lower.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(config_err(format!(
            "{origin}: root hash {hash:?} is not 40, 64 or 128 hex digits"
        )));
    }
    Ok(lower)
}

impl ReferenceValues {
    /// Reads the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AgentError::io(
                Step::Config,
                format!("reference values {}", path.display()),
                e,
            )
        })?;
        Self::parse(&text).map_err(|e| {
            config_err(format!(
                "reference values {}: {}",
                path.display(),
                e.message()
            ))
        })
    }

    /// Parses reference values from TOML text.
    pub fn parse(text: &str) -> Result<Self, AgentError> {
        let file: RefFile = toml::from_str(text).map_err(|e| config_err(e.message().to_owned()))?;
        let mut values = Self::default();
        for h in &file.root_hashes {
            let h = check_root_hash("root_hashes", h)?;
            values.allowed.insert(h, None);
        }
        for (i, l) in file.layers.iter().enumerate() {
            let origin = format!("layers[{i}]");
            let h = check_root_hash(&origin, &l.root_hash)?;
            match &l.digest {
                None => {
                    values.allowed.insert(h, None);
                }
                Some(d) => {
                    validate_digest(d).map_err(|m| config_err(format!("{origin}: {m}")))?;
                    match values
                        .allowed
                        .entry(h)
                        .or_insert_with(|| Some(BTreeSet::new()))
                    {
                        None => {} // already allowed for any digest
                        Some(set) => {
                            set.insert(d.clone());
                        }
                    }
                }
            }
        }
        if values.allowed.is_empty() {
            return Err(config_err("no root hashes listed".into()));
        }
        Ok(values)
    }

    /// Adds a root hash allowed for any digest.
    pub fn allow(&mut self, root_hash_hex: &str) {
        self.allowed
            .insert(root_hash_hex.to_ascii_lowercase(), None);
    }

    /// Number of listed root hashes.
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether `root_hash_hex` may be used for the layer `digest`; `Err` says why not.
    pub fn check(&self, root_hash_hex: &str, digest: &str) -> Result<(), String> {
        match self.allowed.get(root_hash_hex) {
            None => Err(format!(
                "root hash {root_hash_hex} is not in the reference values"
            )),
            Some(None) => Ok(()),
            Some(Some(digests)) if digests.contains(digest) => Ok(()),
            Some(Some(digests)) => Err(format!(
                "root hash {root_hash_hex} is listed for {} only, not for this digest",
                digests.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// The policy the agent enforces.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Refuse layers without verity.
    pub require_verity: bool,
    /// Refuse root hashes not listed here.
    pub reference_values: Option<ReferenceValues>,
}

impl Policy {
    /// Confidential mode: verity required and reference values loaded.
    pub fn confidential(&self) -> bool {
        self.require_verity && self.reference_values.is_some()
    }

    /// Checks every layer of the plan; the first refusal is a `PermissionDenied` naming
    /// the layer.
    pub fn check(&self, plan: &MountPlan) -> Result<(), AgentError> {
        // A plain scratch disk is the host's to read and write; tmpfs (guest memory) and
        // the encrypted disk (a key made in the guest) are not.
        if self.confidential() && matches!(plan.upper, UpperSpec::Disk { .. }) {
            return Err(AgentError::new(
                Kind::PermissionDenied,
                Step::Policy,
                "upper: a scratch-disk upper is written by the host and verified by nothing; \
                 confidential mode allows only a tmpfs or an encrypted-disk upper",
            )
            .container(&plan.container_id));
        }
        for (i, layer) in plan.layers.iter().enumerate() {
            let deny = |m: String| {
                AgentError::new(Kind::PermissionDenied, Step::Policy, m)
                    .layer(i, &layer.digest)
                    .container(&plan.container_id)
            };
            match &layer.verity {
                None if self.require_verity || self.reference_values.is_some() => {
                    return Err(deny(
                        "the layer has no dm-verity parameters and policy requires verity".into(),
                    ));
                }
                None => {}
                Some(v) => {
                    if let Some(refs) = &self.reference_values {
                        refs.check(&v.root_hash_hex(), &layer.digest)
                            .map_err(deny)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

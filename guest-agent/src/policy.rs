//! Policy, checked for the whole plan before anything is created: `require_verity`
//! refuses layers without dm-verity; reference values refuse root hashes they do not list
//! (and, where they list digests for a root hash, any other digest).

use std::path::Path;

use layerpass_protocols::status::Kind;
use layerpass_types::reference_values as types_refs;

use crate::error::{AgentError, Step};
use crate::plan::{MountPlan, UpperSpec};

pub mod initdata;

/// Root hashes a layer may have, optionally bound to layer digests: the shared parser
/// ([`layerpass_types::ReferenceValues`], whose documentation has the TOML format) with the
/// agent's errors. Loaded from TOML:
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
pub struct ReferenceValues(types_refs::ReferenceValues);

fn config_err(message: String) -> AgentError {
    AgentError::new(Kind::InvalidArgument, Step::Config, message)
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
        types_refs::ReferenceValues::parse(&text)
            .map(Self)
            .map_err(|e| config_err(format!("reference values {}: {e}", path.display())))
    }

    /// Parses reference values from TOML text.
    pub fn parse(text: &str) -> Result<Self, AgentError> {
        types_refs::ReferenceValues::parse(text)
            .map(Self)
            .map_err(|e| config_err(e.to_string()))
    }

    /// Adds a root hash allowed for any digest.
    pub fn allow(&mut self, root_hash_hex: &str) {
        self.0.allow(root_hash_hex);
    }

    /// Number of listed root hashes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `root_hash_hex` may be used for the layer `digest`; `Err` says why not.
    pub fn check(&self, root_hash_hex: &str, digest: &str) -> Result<(), String> {
        self.0
            .allows(root_hash_hex, Some(digest))
            .map_err(|e| e.to_string())
    }

    /// The shared values.
    pub fn values(&self) -> &types_refs::ReferenceValues {
        &self.0
    }
}

impl From<types_refs::ReferenceValues> for ReferenceValues {
    fn from(values: types_refs::ReferenceValues) -> Self {
        Self(values)
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

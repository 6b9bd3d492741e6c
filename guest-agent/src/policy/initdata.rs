//! Reference values from a CoCo initdata document: the `"layerpass.toml"` entry under
//! `[data]` is the reference-values TOML ([`ReferenceValues::parse`]).
//!
//! The document is the one Kata writes to `/run/confidential-containers/initdata/
//! initdata.toml` (from the pod annotation `io.katacontainers.config.hypervisor.
//! cc_init_data`); its digest is bound to the TEE by the platform and the attestation
//! agent (SNP HOSTDATA, TDX MRCONFIGID, or PCR 8), not by this agent. The agent logs the
//! digest, computed the same way (the document's algorithm over its raw bytes), so that it
//! can be compared with the evidence. See docs/attestation.md.

use std::io::Read;
use std::path::Path;

use layerpass_protocols::status::Kind;
use layerpass_types::initdata::{Initdata, LAYERPASS_KEY, MAX_BYTES};

use super::ReferenceValues;
use crate::error::{AgentError, Step};

/// Reference values read from an initdata document, and the document.
#[derive(Debug, Clone)]
pub struct FromInitdata {
    /// The reference values under [`LAYERPASS_KEY`].
    pub reference_values: ReferenceValues,
    /// The whole document (its digest, its other entries).
    pub initdata: Initdata,
}

fn config_err(message: String) -> AgentError {
    AgentError::new(Kind::InvalidArgument, Step::Config, message)
}

/// Reads the initdata document at `path` (at most [`MAX_BYTES`]) and the reference values
/// in it, and logs its digest.
pub fn load(path: &Path) -> Result<FromInitdata, AgentError> {
    let what = format!("initdata {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| AgentError::io(Step::Config, &what, e))?;
    let mut raw = Vec::new();
    let limit = u64::try_from(MAX_BYTES).unwrap_or(u64::MAX);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| AgentError::io(Step::Config, &what, e))?;
    if raw.len() > MAX_BYTES {
        return Err(config_err(format!(
            "{what}: larger than the limit of {MAX_BYTES} bytes"
        )));
    }
    let found = parse(&raw, &what)?;
    tracing::info!(
        path = %path.display(),
        digest = %found.initdata.digest_string(),
        root_hashes = found.reference_values.len(),
        "reference values from initdata"
    );
    Ok(found)
}

/// Parses an initdata document and the reference values under [`LAYERPASS_KEY`]; errors
/// are `InvalidArgument` and start with `origin`.
pub fn parse(raw: &[u8], origin: &str) -> Result<FromInitdata, AgentError> {
    let initdata = Initdata::parse(raw).map_err(|e| config_err(format!("{origin}: {e}")))?;
    let text = initdata
        .require(LAYERPASS_KEY)
        .map_err(|e| config_err(format!("{origin}: {e} (layerpass's reference values)")))?;
    let reference_values = ReferenceValues::parse(text).map_err(|e| {
        config_err(format!(
            "{origin}: [data] {LAYERPASS_KEY:?}: {}",
            e.message()
        ))
    })?;
    Ok(FromInitdata {
        reference_values,
        initdata,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::BTreeMap;

    use layerpass_types::initdata::{InitdataAlgorithm, render};

    use super::*;

    fn doc(values: &str) -> String {
        let data = BTreeMap::from([
            ("aa.toml".to_owned(), "[eventlog_config]\n".to_owned()),
            (LAYERPASS_KEY.to_owned(), values.to_owned()),
        ]);
        render(InitdataAlgorithm::Sha256, &data)
    }

    #[test]
    fn reads_the_reference_values_under_our_key() {
        let root = "ab".repeat(32);
        let digest = format!("sha256:{}", "0".repeat(64));
        let text = doc(&format!(
            "[[layers]]\nroot_hash = \"{root}\"\ndigest = \"{digest}\"\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initdata.toml");
        std::fs::write(&path, &text).unwrap();
        let found = load(&path).unwrap();
        assert_eq!(found.reference_values.len(), 1);
        assert!(found.reference_values.check(&root, &digest).is_ok());
        assert!(
            found
                .reference_values
                .check(&root, &format!("sha256:{}", "1".repeat(64)))
                .is_err()
        );
        assert_eq!(
            found.initdata.digest(),
            &InitdataAlgorithm::Sha256.hash(text.as_bytes())[..]
        );
    }

    #[test]
    fn refusals_name_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initdata.toml");
        let cases = [
            // no entry of ours
            (
                render(InitdataAlgorithm::Sha256, &BTreeMap::new()),
                "no \"layerpass.toml\" under [data]",
            ),
            // our entry, not reference values
            (doc("root_hashes = []\n"), "no root hashes listed"),
            (
                doc("nonsense = 1\n"),
                "[data] \"layerpass.toml\": unknown field",
            ),
            // not initdata
            (doc("").replace("0.1.0", "9"), "version \"9\""),
        ];
        for (text, needle) in cases {
            std::fs::write(&path, &text).unwrap();
            let e = load(&path).unwrap_err();
            assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains("initdata.toml"), "{msg}");
        }
        let e = load(&dir.path().join("absent.toml")).unwrap_err();
        assert_eq!(e.kind(), Kind::NotFound);
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let mut text = doc(&format!("root_hashes = [\"{}\"]\n", "ab".repeat(32))).into_bytes();
        text.resize(MAX_BYTES + 4096, b'\n');
        std::fs::write(&path, &text).unwrap();
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("larger than the limit"), "{msg}");
        // at the limit it is read
        text.truncate(MAX_BYTES);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(load(&path).unwrap().reference_values.len(), 1);
    }
}

//! `layerpass attest initdata FILE`: checks a CoCo initdata document and prints its digest
//! (the document's algorithm over the file's bytes: `sha256sum FILE` for sha256) and the
//! value each TEE's field holds for it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use layerpass_types::ReferenceValues;
use layerpass_types::initdata::{Initdata, InitdataAlgorithm, LAYERPASS_KEY, MAX_BYTES, TeeField};
use serde::Serialize;

use super::super::{Outcome, emit};

/// An initdata digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl From<Algorithm> for InitdataAlgorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha256 => Self::Sha256,
            Algorithm::Sha384 => Self::Sha384,
            Algorithm::Sha512 => Self::Sha512,
        }
    }
}

#[derive(Debug, Args)]
pub struct InitdataArgs {
    /// The initdata TOML document (`-` reads stdin).
    file: PathBuf,
    /// Require the document to name this algorithm (e.g. sha256 for a TPM's PCR 8).
    #[arg(long, value_enum)]
    algorithm: Option<Algorithm>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One TEE field's value, or why it has none.
#[derive(Debug, Serialize)]
struct FieldJson {
    field: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable: Option<String>,
}

#[derive(Debug, Serialize)]
struct InitdataJson {
    algorithm: &'static str,
    /// Hex.
    digest: String,
    keys: Vec<String>,
    tee_fields: Vec<FieldJson>,
    /// Root hashes in `"layerpass.toml"` (absent without the entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_values: Option<usize>,
    /// Why `"layerpass.toml"` is not reference values the guest accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_values_error: Option<String>,
}

impl InitdataArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_BYTES)?.saturating_add(1);
        if self.file.as_os_str() == "-" {
            std::io::stdin().take(limit).read_to_end(&mut raw)
        } else {
            std::fs::File::open(&self.file).and_then(|f| f.take(limit).read_to_end(&mut raw))
        }
        .with_context(|| format!("cannot read {}", self.file.display()))?;
        if raw.len() > MAX_BYTES {
            bail!(
                "{}: larger than the initdata limit of {MAX_BYTES} bytes",
                self.file.display()
            );
        }
        let doc = Initdata::parse(&raw).with_context(|| format!("{}", self.file.display()))?;
        if let Some(want) = self.algorithm.map(InitdataAlgorithm::from)
            && want != doc.algorithm()
        {
            bail!(
                "{}: the document's algorithm is {}, not {want}",
                self.file.display(),
                doc.algorithm()
            );
        }
        if self.json {
            let tee_fields = TeeField::ALL
                .into_iter()
                .map(|f| match f.value(doc.digest()) {
                    Ok(v) => FieldJson {
                        field: f.name(),
                        value: Some(hex::encode(v)),
                        unavailable: None,
                    },
                    Err(why) => FieldJson {
                        field: f.name(),
                        value: None,
                        unavailable: Some(why),
                    },
                })
                .collect();
            let values = doc.get(LAYERPASS_KEY).map(ReferenceValues::parse);
            emit(&serde_json::to_string(&InitdataJson {
                algorithm: doc.algorithm().name(),
                digest: hex::encode(doc.digest()),
                keys: doc.data().keys().cloned().collect(),
                tee_fields,
                reference_values: values
                    .as_ref()
                    .and_then(|v| v.as_ref().ok())
                    .map(|v| v.len()),
                reference_values_error: values.and_then(|v| v.err()).map(|e| e.to_string()),
            })?)?;
        } else {
            emit(&format!(
                "{}: initdata 0.1.0, [data] keys: {}\n{}",
                self.file.display(),
                doc.data().keys().cloned().collect::<Vec<_>>().join(", "),
                describe(&doc)
            ))?;
        }
        Ok(Outcome::Success)
    }
}

/// The digest and the TEE fields' values, one per line (also what `reference-values
/// --format initdata` prints on stderr).
pub fn describe(doc: &Initdata) -> String {
    let mut out = format!(
        "initdata digest: {} ({} of the document's bytes)\n",
        doc.digest_string(),
        doc.algorithm()
    );
    for f in TeeField::ALL {
        match f.value(doc.digest()) {
            Ok(v) => out.push_str(&format!("  {:<26} {}\n", f.name(), hex::encode(v))),
            Err(why) => out.push_str(&format!("  {:<26} none: {why}\n", f.name())),
        }
    }
    match doc.get(LAYERPASS_KEY).map(ReferenceValues::parse) {
        None => out.push_str(&format!(
            "  no {LAYERPASS_KEY:?} entry: the guest agent finds no reference values in it\n"
        )),
        Some(Ok(values)) => out.push_str(&format!(
            "  {LAYERPASS_KEY:?}: reference values, {} root hashes\n",
            values.len()
        )),
        Some(Err(e)) => out.push_str(&format!(
            "  {LAYERPASS_KEY:?}: not reference values the guest agent accepts: {e}\n"
        )),
    }
    out
}

//! `layerpass attest verify`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use layerpass::attest::verify::{
    DEFAULT_PCR_INDEX, Report, VerifiedEvent, VerifyOptions, parse_pcr, read_event_log,
    read_reference_values, verify,
};

use super::super::{Outcome, emit};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The event log (the attestation agent's `/run/attestation-agent/eventlog`, or the
    /// guest agent's `<run_dir>/eventlog` written by its TPM backend), as it is.
    #[arg(long, value_name = "FILE")]
    event_log: PathBuf,
    /// The register's SHA-256 value: 64 hex digits, either case, as
    /// `/sys/class/tpm/tpm0/pcr-sha256/N` prints it.
    #[arg(long, value_name = "HEX")]
    pcr: String,
    /// The register the events were extended into.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PCR_INDEX)]
    pcr_index: u32,
    /// Reference values (TOML) every mounted layer must be allowed by.
    #[arg(long, value_name = "FILE")]
    reference_values: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let pcr = parse_pcr(&self.pcr)?;
        let reference_values = self
            .reference_values
            .as_deref()
            .map(read_reference_values)
            .transpose()?;
        let log = read_event_log(&self.event_log)?;
        let opts = VerifyOptions {
            pcr_index: self.pcr_index,
            pcr,
            reference_values,
        };
        match verify(&log, &opts) {
            Ok(report) => {
                if self.json {
                    emit(&serde_json::to_string(&report)?)?;
                } else {
                    emit(&text(&self, &report))?;
                }
                Ok(Outcome::Success)
            }
            Err(rejection) => {
                if self.json {
                    emit(
                        &serde_json::json!({
                            "verified": false,
                            "event": rejection.entry,
                            "error": rejection.reason.to_string(),
                        })
                        .to_string(),
                    )?;
                }
                tracing::error!(
                    "{}: evidence rejected: {rejection}",
                    self.event_log.display()
                );
                Ok(Outcome::CheckFailed)
            }
        }
    }
}

fn text(args: &VerifyArgs, r: &Report) -> String {
    let mut s = format!(
        "{}: {} events of PCR {} replay to {} (the register's value)",
        args.event_log.display(),
        r.events.len(),
        r.pcr_index,
        r.pcr
    );
    if r.other_registers > 0 {
        let _ = write!(
            s,
            "; {} entries of other registers not verified",
            r.other_registers
        );
    }
    s.push_str(if r.reference_values_checked {
        "\nmounted layers checked against the reference values\n"
    } else {
        "\nno reference values given: layers not checked against any\n"
    });
    for e in &r.events {
        match e {
            VerifiedEvent::Layer {
                index,
                offset,
                operation,
                container_id,
                digest,
                root_hash,
                ..
            } => {
                let _ = writeln!(
                    s,
                    "event {index} at offset {offset}: {operation} container {container_id} digest {} root hash {root_hash}",
                    digest.as_deref().unwrap_or("(unknown)")
                );
            }
            VerifiedEvent::Foreign {
                index,
                offset,
                domain,
                operation,
                content,
            } => {
                let _ = writeln!(
                    s,
                    "event {index} at offset {offset}: foreign {domain} {operation} {content}"
                );
            }
        }
    }
    s
}

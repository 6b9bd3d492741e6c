//! Reference values written out: the guest agent's reference-values TOML (each root hash
//! bound to its layer's diff ID), JSON (everything, for tools), or a complete CoCo initdata
//! document holding that TOML under `"layerpass.toml"` and the attestation agent's
//! configuration with the event log enabled.

use std::collections::BTreeMap;

use layerpass_types::initdata::{self, AA_KEY, InitdataAlgorithm, LAYERPASS_KEY};

use super::reference::{BuilderReport, ReferenceReport};

/// The attestation agent's configuration in the initdata we write (`aa.toml`): the event
/// log on, so that `ExtendRuntimeMeasurement` records (it answers `NOT_ENABLED` otherwise).
/// Kata starts the agent with this file instead of the kernel command line: the KBS
/// (`[token_configs.kbs] url`) must be added here when one is used.
pub const AA_TOML: &str = "\
# attestation-agent configuration (Kata writes it to \
/run/confidential-containers/initdata/aa.toml).
# The event log records the guest agent's layer measurements (ExtendRuntimeMeasurement);
# without it the attestation agent answers NOT_ENABLED. init_pcr 17 is its default
# register (RTMR3 on TDX). Add [token_configs.kbs] url = \"...\" when a KBS is used: with
# this file the agent no longer reads the KBS address from the kernel command line.
[eventlog_config]
enable_eventlog = true
init_pcr = 17
";

/// The guest agent's reference-values TOML: a comment saying how they were computed, then
/// one `[[layers]]` per layer, its root hash bound to its diff ID. Nothing in it depends on
/// the machine (no paths): the same layers give the same bytes, and so the same initdata
/// digest, anywhere.
pub fn reference_values_toml(report: &ReferenceReport) -> String {
    let mut out =
        String::from("# reference values computed by `layerpass attest reference-values`\n");
    match &report.builder {
        BuilderReport::Layerpass {
            mkfs_time,
            index: false,
            ..
        } => out.push_str(&format!(
            "# as layerpass: its reproducible EROFS images, build time {mkfs_time}\n"
        )),
        BuilderReport::Layerpass {
            mkfs_time,
            index: true,
            ..
        } => out.push_str(&format!(
            "# as layerpass index layers: EROFS metadata over each tar, build time {mkfs_time}\n"
        )),
        BuilderReport::Containerd {
            erofs_utils_version,
            containerd_path,
            mkfs_args,
            note,
            ..
        } => {
            out.push_str(&format!(
                "# as containerd's EROFS {} path: erofs-utils {erofs_utils_version},\n\
                 # mkfs.erofs {} <out> < tar\n",
                containerd_path.name(),
                mkfs_args.join(" ")
            ));
            out.push_str(&comment(note));
        }
    }
    if let Some(img) = &report.image {
        if let Some(m) = &img.manifest {
            out.push_str(&format!("# image manifest: {m}\n"));
        }
        out.push_str(&format!("# image config: {}\n", img.config));
    }
    out.push_str(
        "# each root hash is bound to the layer's diff ID (sha256 of the uncompressed tar)\n",
    );
    for l in &report.layers {
        out.push_str(&format!(
            "\n# layer {}: {}\n[[layers]]\nroot_hash = \"{}\"\ndigest = \"{}\"\n",
            l.index, l.digest, l.root_hash, l.diff_id
        ));
    }
    out
}

/// The whole report as pretty JSON.
pub fn json(report: &ReferenceReport) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// A complete initdata document: the reference values under `"layerpass.toml"` and, with
/// `attestation_agent`, [`AA_TOML`] under `"aa.toml"`. No `"cdh.toml"`: the confidential
/// data hub refuses a configuration without `[kbc]`, and Kata starts it from the kernel
/// command line when the entry is absent.
pub fn initdata(
    reference_values: &str,
    algorithm: InitdataAlgorithm,
    attestation_agent: bool,
) -> String {
    let mut data = BTreeMap::from([(LAYERPASS_KEY.to_owned(), reference_values.to_owned())]);
    if attestation_agent {
        data.insert(AA_KEY.to_owned(), AA_TOML.to_owned());
    }
    initdata::render(algorithm, &data)
}

/// `text` as `# ` comment lines of at most about 88 columns.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 88 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use layerpass_types::Digest;
    use layerpass_types::initdata::Initdata;

    use super::*;
    use crate::attest::containerd::{ContainerdPath, REPRODUCIBILITY_NOTE};
    use crate::attest::reference::LayerReference;

    fn report(builder: BuilderReport) -> ReferenceReport {
        let d = |c: char| Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap();
        ReferenceReport {
            builder,
            image: None,
            layers: (0..2)
                .map(|i| LayerReference {
                    index: i,
                    source: format!("layer\n{i}.tar"),
                    digest: d('a'),
                    diff_id: d(if i == 0 { '1' } else { '2' }),
                    root_hash: format!("{i}").repeat(64),
                    hash_offset: 4096,
                    hash_algorithm: "sha256".into(),
                    data_block_size: 4096,
                    hash_block_size: 4096,
                    salt: "00".repeat(32),
                    erofs_uuid: None,
                })
                .collect(),
        }
    }

    #[test]
    fn toml_binds_each_root_hash_to_its_diff_id() {
        let r = report(BuilderReport::Containerd {
            mkfs_erofs: "mkfs.erofs".into(),
            erofs_utils_version: "1.8.6".into(),
            containerd_path: ContainerdPath::Differ,
            mkfs_args: vec!["--tar=f".into()],
            note: REPRODUCIBILITY_NOTE,
        });
        let text = reference_values_toml(&r);
        assert!(text.contains("erofs-utils 1.8.6"), "{text}");
        assert!(!text.contains("layer\n"), "no paths: {text}");
        assert!(text.contains("build time"), "{text}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        let layers = v["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1]["root_hash"].as_str().unwrap(), "1".repeat(64));
        assert_eq!(
            layers[1]["digest"].as_str().unwrap(),
            format!("sha256:{}", "2".repeat(64))
        );
        // the guest's parser (the format's owner) accepts it and binds as written
        let refs = layerpass_guest::policy::ReferenceValues::parse(&text).unwrap();
        assert!(
            refs.check(&"1".repeat(64), &format!("sha256:{}", "2".repeat(64)))
                .is_ok()
        );
        assert!(
            refs.check(&"1".repeat(64), &format!("sha256:{}", "1".repeat(64)))
                .is_err()
        );
    }

    #[test]
    fn initdata_holds_the_reference_values_and_the_event_log_setting() {
        let text = reference_values_toml(&report(BuilderReport::Layerpass {
            version: "0",
            mkfs_time: 0,
            index: false,
        }));
        let doc = initdata(&text, InitdataAlgorithm::Sha384, true);
        let parsed = Initdata::parse(doc.as_bytes()).unwrap();
        assert_eq!(parsed.get(LAYERPASS_KEY).unwrap(), text);
        let aa: toml::Value = toml::from_str(parsed.get(AA_KEY).unwrap()).unwrap();
        assert_eq!(
            aa["eventlog_config"]["enable_eventlog"].as_bool(),
            Some(true)
        );
        assert_eq!(aa["eventlog_config"]["init_pcr"].as_integer(), Some(17));
        assert_eq!(parsed.get("cdh.toml"), None);
        assert_eq!(parsed.algorithm(), InitdataAlgorithm::Sha384);
        let bare = initdata(&text, InitdataAlgorithm::Sha256, false);
        assert_eq!(Initdata::parse(bare.as_bytes()).unwrap().data().len(), 1);
        let found = layerpass_guest::policy::initdata::parse(doc.as_bytes(), "test").unwrap();
        assert_eq!(found.reference_values.len(), 2);
    }
}

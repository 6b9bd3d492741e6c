//! The fuzz harnesses of the guest's parsers of hostile input, in one place for the fuzz
//! targets and the tests.
//!
//! `fuzz/fuzz_targets/{mount_plan_json,mount_request_protobuf,reference_values_toml,
//! initdata_toml}.rs` hand every input to [`mount_plan_json`], [`mount_request_protobuf`],
//! [`reference_values_toml`] and [`initdata_toml`], and so does `guest-agent/tests/fuzz_corpus.rs` for every file
//! of the committed corpora, so `cargo test` runs exactly the fuzz targets' code. Not used by
//! the agent itself.
//!
//! The oracle, checked on every input:
//! - nothing panics;
//! - a rejected input is an `InvalidArgument` error (never an internal or I/O error);
//! - a mount plan that converts and validates survives the way back: its `MountRequest`,
//!   written as protobuf and as JSON and read again, converts to the same plan;
//! - accepted reference values list at least one root hash;
//! - an accepted initdata document's digest is its algorithm over the input bytes, and the
//!   document written again by `initdata::render` reads back to the same entries.

use layerpass_protocols::json;
use layerpass_protocols::protobuf::Message;
use layerpass_protocols::status::Kind;
use layerpass_protocols::v1::guest as pb;

use crate::error::AgentError;
use crate::plan::{
    CorruptionMode, DiskRef, FsType, HashAlgorithm, LayerSpec, MountPlan, OverlayOptions,
    UpperSpec, VerityParams,
};
use crate::policy::ReferenceValues;
use crate::policy::initdata as policy_initdata;
use crate::server::convert;
use layerpass_types::initdata::{Initdata, render};

/// How far an input got (for tests that check a corpus reaches every stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Not UTF-8 (text formats only).
    Text,
    /// Rejected by the decoder (JSON, protobuf or TOML).
    Decode,
    /// Decoded, rejected by the conversion to the agent's types.
    Convert,
    /// Converted, rejected by the validation.
    Validate,
    /// Accepted.
    Accepted,
}

/// A broken invariant: a bug in the parser, the conversion or the validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A rejection that is not an `InvalidArgument` error.
    #[error("{stage:?} rejected the input as {kind:?}, not InvalidArgument: {message}")]
    Kind {
        /// Where the input was rejected.
        stage: Stage,
        /// The error's kind.
        kind: Kind,
        /// The error.
        message: String,
    },
    /// An accepted plan that does not come back the same from its own request.
    #[error("the plan does not survive the round trip through {via}: {plan} came back as {back}")]
    RoundTrip {
        /// "protobuf" or "JSON".
        via: &'static str,
        /// The accepted plan (debug form).
        plan: String,
        /// What came back, or why nothing did.
        back: String,
    },
    /// Reference values accepted with no root hash in them.
    #[error("reference values accepted with no root hash listed")]
    EmptyReferenceValues,
    /// An accepted initdata document whose digest is not its algorithm over its bytes.
    #[error("initdata accepted with digest {digest}, not the {algorithm} of its bytes")]
    InitdataDigest {
        /// The algorithm the document names.
        algorithm: String,
        /// The digest the parser gave (hex).
        digest: String,
    },
    /// An accepted initdata document that does not read back the same once rendered.
    #[error("initdata does not survive render and parse: {0}")]
    InitdataRoundTrip(String),
}

/// The `mount_plan_json` target: the one-shot plan JSON (`layerpass-guest mount --plan`)
/// through the JSON mapping, the conversion and `MountPlan::validate`.
pub fn mount_plan_json(input: &[u8]) -> Result<Stage, Violation> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(Stage::Text);
    };
    match json::parse_mount_request(text) {
        Ok(req) => plan_of(&req),
        Err(_) => Ok(Stage::Decode),
    }
}

/// The `mount_request_protobuf` target: a `MountRequest` as the ttrpc server decodes it,
/// through the same conversion and validation.
pub fn mount_request_protobuf(input: &[u8]) -> Result<Stage, Violation> {
    match pb::MountRequest::parse_from_bytes(input) {
        Ok(req) => plan_of(&req),
        Err(_) => Ok(Stage::Decode),
    }
}

/// The `reference_values_toml` target: `ReferenceValues::parse`.
pub fn reference_values_toml(input: &[u8]) -> Result<Stage, Violation> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(Stage::Text);
    };
    match ReferenceValues::parse(text) {
        Ok(values) if values.is_empty() => Err(Violation::EmptyReferenceValues),
        Ok(_) => Ok(Stage::Accepted),
        Err(e) => invalid_argument(Stage::Decode, &e),
    }
}

/// The `initdata_toml` target: an initdata document as the agent reads it for
/// `--initdata` (`policy::initdata::parse`: the document, then the reference values under
/// `"layerpass.toml"`). Stages: `Decode` (not initdata), `Validate` (initdata, but no
/// valid reference values in it), `Accepted`.
pub fn initdata_toml(input: &[u8]) -> Result<Stage, Violation> {
    let Ok(doc) = Initdata::parse(input) else {
        // a refusal is a typed `InitdataError`: nothing else to check
        return Ok(Stage::Decode);
    };
    if doc.digest() != doc.algorithm().hash(input) {
        return Err(Violation::InitdataDigest {
            algorithm: doc.algorithm().to_string(),
            digest: hex::encode(doc.digest()),
        });
    }
    let again = render(doc.algorithm(), doc.data());
    match Initdata::parse(again.as_bytes()) {
        Ok(back) if back.data() == doc.data() && back.algorithm() == doc.algorithm() => {}
        Ok(back) => {
            return Err(Violation::InitdataRoundTrip(format!(
                "{:?} came back as {:?}",
                doc.data(),
                back.data()
            )));
        }
        Err(e) => return Err(Violation::InitdataRoundTrip(format!("{again:?}: {e}"))),
    }
    match policy_initdata::parse(input, "initdata") {
        Ok(found) if found.reference_values.is_empty() => Err(Violation::EmptyReferenceValues),
        Ok(_) => Ok(Stage::Accepted),
        Err(e) => invalid_argument(Stage::Validate, &e),
    }
}

/// `Ok(stage)` if `e` is an `InvalidArgument` error.
fn invalid_argument(stage: Stage, e: &AgentError) -> Result<Stage, Violation> {
    if e.kind() == Kind::InvalidArgument {
        Ok(stage)
    } else {
        Err(Violation::Kind {
            stage,
            kind: e.kind(),
            message: e.to_string(),
        })
    }
}

/// Converts and validates a decoded request; an accepted plan must survive the round trip.
fn plan_of(req: &pb::MountRequest) -> Result<Stage, Violation> {
    let plan = match convert::mount_plan(req) {
        Ok(plan) => plan,
        Err(e) => return invalid_argument(Stage::Convert, &e),
    };
    if let Err(e) = plan.validate() {
        return invalid_argument(Stage::Validate, &e);
    }
    let back = convert::mount_request(&plan);
    let round_trip = |via: &'static str, again: Result<MountPlan, String>| match again {
        Ok(p) if p == plan => Ok(()),
        Ok(p) => Err(Violation::RoundTrip {
            via,
            plan: format!("{plan:?}"),
            back: format!("{p:?}"),
        }),
        Err(e) => Err(Violation::RoundTrip {
            via,
            plan: format!("{plan:?}"),
            back: e,
        }),
    };
    round_trip(
        "protobuf",
        back.write_to_bytes()
            .map_err(|e| e.to_string())
            .and_then(|b| pb::MountRequest::parse_from_bytes(&b).map_err(|e| e.to_string()))
            .and_then(|r| convert::mount_plan(&r).map_err(|e| e.to_string())),
    )?;
    round_trip(
        "JSON",
        json::print_plan(&back)
            .map_err(|e| e.to_string())
            .and_then(|t| json::parse_mount_request(&t).map_err(|e| e.to_string()))
            .and_then(|r| convert::mount_plan(&r).map_err(|e| e.to_string())),
    )?;
    Ok(Stage::Accepted)
}

/// The seeds' uppers, by seed name: one of each kind.
fn seed_uppers() -> [(&'static str, UpperSpec); 3] {
    [
        (
            "seed-upper-disk",
            UpperSpec::Disk {
                disk: DiskRef::Serial("upper".into()),
                fs_type: "ext4".into(),
            },
        ),
        (
            "seed-upper-tmpfs",
            UpperSpec::Tmpfs {
                size_bytes: 1 << 20,
            },
        ),
        (
            "seed-upper-encrypted-disk",
            UpperSpec::EncryptedDisk {
                disk: DiskRef::Serial("upper".into()),
            },
        ),
    ]
}

/// A valid plan for the seeds: two layers (a disk with dm-verity, a partition without),
/// `upper`, a mount point; volatile over a tmpfs.
fn seed_plan(upper: UpperSpec) -> MountPlan {
    let tmpfs = matches!(upper, UpperSpec::Tmpfs { .. });
    let verity = VerityParams {
        algorithm: HashAlgorithm::Sha256,
        format: 1,
        data_block_size: 4096,
        hash_block_size: 4096,
        data_blocks: 10,
        hash_start_block: 11,
        salt: vec![0; 32],
        root_hash: vec![0xab; 32],
        on_corruption: CorruptionMode::Eio,
    };
    MountPlan {
        container_id: "c1".into(),
        layers: vec![
            LayerSpec {
                digest: format!("sha256:{}", "1".repeat(64)),
                disk: DiskRef::Serial("layer1".into()),
                fs_type: FsType::Erofs,
                verity: Some(verity),
            },
            LayerSpec {
                digest: format!("sha256:{}", "2".repeat(64)),
                disk: DiskRef::Partition {
                    serial: "image1".into(),
                    name: "layer2".into(),
                },
                fs_type: FsType::Erofs,
                verity: None,
            },
        ],
        upper,
        mount_point: Some("c1".into()),
        overlay: OverlayOptions {
            volatile: tmpfs,
            userxattr: false,
        },
    }
}

/// The seeds of `fuzz/corpus/mount_plan_json/`: valid plans as `layerpass-guest mount
/// --plan` reads them.
pub fn seeds_mount_plan_json() -> Vec<(&'static str, Vec<u8>)> {
    seed_uppers()
        .into_iter()
        .map(|(name, upper)| {
            let req = convert::mount_request(&seed_plan(upper));
            let text = json::print_plan(&req).unwrap_or_default();
            (name, text.into_bytes())
        })
        .collect()
}

/// The seeds of `fuzz/corpus/mount_request_protobuf/`: valid plans as the ttrpc server
/// receives them.
pub fn seeds_mount_request_protobuf() -> Vec<(&'static str, Vec<u8>)> {
    seed_uppers()
        .into_iter()
        .map(|(name, upper)| {
            let req = convert::mount_request(&seed_plan(upper));
            (name, req.write_to_bytes().unwrap_or_default())
        })
        .collect()
}

/// The seeds of `fuzz/corpus/reference_values_toml/`: both ways of listing a root hash.
pub fn seeds_reference_values_toml() -> Vec<(&'static str, Vec<u8>)> {
    let text = format!(
        "# any digest\nroot_hashes = [\"{a}\", \"{b}\"]\n\n\
         [[layers]]\nroot_hash = \"{c}\"\ndigest = \"sha256:{d}\"\n\n\
         [[layers]]\nroot_hash = \"{e}\"\n",
        a = "ab".repeat(32),
        b = "CD".repeat(20),
        c = "ef".repeat(64),
        d = "0".repeat(64),
        e = "12".repeat(32),
    );
    vec![("seed-reference-values", text.into_bytes())]
}

/// The seeds of `fuzz/corpus/initdata_toml/`: a document as `layerpass attest
/// reference-values --format initdata` writes it (with the attestation agent's entry), and
/// the smallest one, under each algorithm.
pub fn seeds_initdata_toml() -> Vec<(&'static str, Vec<u8>)> {
    use layerpass_types::initdata::{AA_KEY, InitdataAlgorithm, LAYERPASS_KEY};
    let values = String::from_utf8(
        seeds_reference_values_toml()
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let full = std::collections::BTreeMap::from([
        (
            AA_KEY.to_owned(),
            "[eventlog_config]\nenable_eventlog = true\ninit_pcr = 17\n".to_owned(),
        ),
        (LAYERPASS_KEY.to_owned(), values),
    ]);
    let small = std::collections::BTreeMap::from([(
        LAYERPASS_KEY.to_owned(),
        format!("root_hashes = [\"{}\"]\n", "ab".repeat(32)),
    )]);
    vec![
        (
            "seed-initdata-sha256",
            render(InitdataAlgorithm::Sha256, &full).into_bytes(),
        ),
        (
            "seed-initdata-sha384",
            render(InitdataAlgorithm::Sha384, &small).into_bytes(),
        ),
        (
            "seed-initdata-sha512",
            render(InitdataAlgorithm::Sha512, &small).into_bytes(),
        ),
    ]
}

//! The guest's fuzz corpora (`fuzz/corpus/{mount_plan_json,mount_request_protobuf,
//! reference_values_toml,initdata_toml}/`), replayed by `cargo test` through the same harnesses the fuzz
//! targets call (`layerpass_guest::fuzz_harness`): every committed input must pass the
//! oracle, each corpus must still reach acceptance, the seeds must be committed as the
//! harness makes them, and any crash file a local fuzz run left in `fuzz/artifacts/` is
//! replayed too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

use std::collections::BTreeMap;

use layerpass_guest::fuzz_harness::{
    Stage, Violation, initdata_toml, mount_plan_json, mount_request_protobuf,
    reference_values_toml, seeds_initdata_toml, seeds_mount_plan_json,
    seeds_mount_request_protobuf, seeds_reference_values_toml,
};
use layerpass_test_support::fuzz_corpus::{check_seeds, corpus_files, replay, replay_artifacts};

type Harness = fn(&[u8]) -> Result<Stage, Violation>;
type Seeds = fn() -> Vec<(&'static str, Vec<u8>)>;

/// Each target: its harness, its seeds, the files committed in its corpus (the replay must
/// see at least as many: raise it when adding files) and the stages the corpus must reach.
const TARGETS: [(&str, Harness, Seeds, usize, &[Stage]); 4] = [
    (
        "mount_plan_json",
        mount_plan_json,
        seeds_mount_plan_json,
        1033,
        &[
            Stage::Decode,
            Stage::Convert,
            Stage::Validate,
            Stage::Accepted,
        ],
    ),
    (
        "mount_request_protobuf",
        mount_request_protobuf,
        seeds_mount_request_protobuf,
        687,
        &[
            Stage::Decode,
            Stage::Convert,
            Stage::Validate,
            Stage::Accepted,
        ],
    ),
    (
        "reference_values_toml",
        reference_values_toml,
        seeds_reference_values_toml,
        1070,
        &[Stage::Decode, Stage::Accepted],
    ),
    (
        "initdata_toml",
        initdata_toml,
        seeds_initdata_toml,
        COMMITTED_INITDATA,
        &[Stage::Decode, Stage::Validate, Stage::Accepted],
    ),
];

/// Files committed in `fuzz/corpus/initdata_toml/`.
const COMMITTED_INITDATA: usize = 1143;

fn corpus(target: &str) {
    let (_, run, _, committed, stages) = TARGETS.iter().find(|t| t.0 == target).unwrap();
    let files = corpus_files(target, *committed);
    let mut reached: BTreeMap<Stage, usize> = BTreeMap::new();
    for stage in replay(&files, run) {
        *reached.entry(stage).or_default() += 1;
    }
    eprintln!("{target}: {} inputs replayed: {reached:?}", files.len());
    for stage in *stages {
        assert!(
            reached.contains_key(stage),
            "{target}: no corpus input reaches {stage:?}: {reached:?}"
        );
    }
}

#[test]
fn fuzz_corpus_mount_plan_json() {
    corpus("mount_plan_json");
}

#[test]
fn fuzz_corpus_mount_request_protobuf() {
    corpus("mount_request_protobuf");
}

#[test]
fn fuzz_corpus_reference_values_toml() {
    corpus("reference_values_toml");
}

#[test]
fn fuzz_corpus_initdata_toml() {
    corpus("initdata_toml");
}

/// The committed seeds are the harnesses', and each is accepted.
#[test]
fn fuzz_seeds() {
    for (target, run, seeds, _, _) in TARGETS {
        let seeds = seeds();
        check_seeds(target, &seeds);
        for (name, input) in &seeds {
            assert_eq!(run(input), Ok(Stage::Accepted), "{target}/{name}");
        }
    }
}

/// Crash files of local fuzz runs (not committed).
#[test]
fn fuzz_artifacts() {
    for (target, run, _, _, _) in TARGETS {
        replay_artifacts(target, run);
    }
}

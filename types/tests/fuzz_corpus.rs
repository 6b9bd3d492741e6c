//! The event-log fuzz corpus (`fuzz/corpus/event_log/`), replayed by `cargo test` through the
//! harness the fuzz target calls (`layerpass_types::attest::fuzz_harness`): every committed
//! input must pass the oracle, the corpus must reach accepted logs with layer measurements
//! and rejected ones, the seeds must be committed as the harness makes them, and any crash
//! file a local fuzz run left in `fuzz/artifacts/event_log/` is replayed too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

use layerpass_test_support::fuzz_corpus::{check_seeds, corpus_files, replay, replay_artifacts};
use layerpass_types::attest::fuzz_harness::{Outcome, run, seeds};

/// Files committed in `fuzz/corpus/event_log/` (raise it when adding files).
const COMMITTED: usize = 299;

#[test]
fn fuzz_corpus_event_log() {
    let files = corpus_files("event_log", COMMITTED);
    let outcomes = replay(&files, run);
    let accepted = outcomes.iter().filter(|o| o.accepted).count();
    let measurements: usize = outcomes.iter().map(|o| o.measurements).sum();
    let rejected = outcomes.len() - accepted;
    let fixed = outcomes.iter().filter(|o| o.fixed_accepted).count();
    let fixed_measurements: usize = outcomes.iter().map(|o| o.fixed_measurements).sum();
    eprintln!(
        "event_log: {} inputs: {accepted} accepted ({measurements} measurements), {rejected} \
         rejected; with digests fixed {fixed} accepted ({fixed_measurements} measurements)",
        files.len()
    );
    assert!(accepted > 0 && measurements > 0 && rejected > 0);
    assert!(fixed > accepted && fixed_measurements > measurements);
}

/// The committed seeds are the harness's, and each does what it was made for.
#[test]
fn fuzz_seeds_event_log() {
    let seeds = seeds();
    check_seeds("event_log", &seeds);
    for (name, input) in &seeds {
        let outcome = run(input).unwrap();
        let expect_accepted = !matches!(*name, "seed-truncated" | "seed-flipped");
        assert_eq!(outcome.accepted, expect_accepted, "{name}: {outcome:?}");
        match *name {
            "seed-three-mounts" => assert_eq!(outcome.measurements, 3),
            "seed-mixed" => assert_eq!(
                outcome,
                Outcome {
                    accepted: true,
                    entries: 5,
                    aael: 5,
                    measurements: 4,
                    fixed_accepted: true,
                    fixed_measurements: 4,
                }
            ),
            // The flipped byte is in a salt: with its digest fixed the content is not a
            // valid measurement (a control character), but the log is well-formed.
            "seed-flipped" => assert_eq!(
                (outcome.fixed_accepted, outcome.fixed_measurements),
                (true, 2)
            ),
            "seed-not-canonical" => assert_eq!((outcome.aael, outcome.measurements), (1, 0)),
            _ => {}
        }
    }
}

/// Crash files of local fuzz runs (not committed).
#[test]
fn fuzz_artifacts_event_log() {
    replay_artifacts("event_log", run);
}

//! Fuzzes the attestation agent's event-log format as `layerpass attest verify` reads it
//! (a log an attacker may have written) through `layerpass_types::attest::eventlog::parse`.
//! The body is `layerpass_types::attest::fuzz_harness::run`, which `cargo test` also runs on
//! every corpus file (`types/tests/fuzz_corpus.rs`); see that module for the oracle.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = layerpass_types::attest::fuzz_harness::run(data) {
        panic!("{e}");
    }
});

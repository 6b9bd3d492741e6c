//! Fuzzes the reference-values TOML (`ReferenceValues::parse`). The body is
//! `layerpass_guest::fuzz_harness::reference_values_toml`, which `cargo test` also runs on
//! every corpus file (`guest-agent/tests/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = layerpass_guest::fuzz_harness::reference_values_toml(data) {
        panic!("{e}");
    }
});

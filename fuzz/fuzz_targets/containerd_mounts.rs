//! Fuzzes containerd's EROFS mount lists (the JSON array of `types.Mount` a runtime receives)
//! through `layerpass::containerd::{parse_json, parse}`. The body is
//! `layerpass::containerd::fuzz_harness::run`, which `cargo test` also runs on every corpus
//! file (`host-agent/tests/fuzz_corpus.rs`); see that module for the oracle.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = layerpass::containerd::fuzz_harness::run(data) {
        panic!("{e}");
    }
});

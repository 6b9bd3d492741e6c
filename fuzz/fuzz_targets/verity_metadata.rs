//! Fuzzes a layer's dm-verity metadata: the `.dmverity` sidecar, the veritysetup superblock
//! and the plan's verity mapping made of them. The body is
//! `layerpass::verity::fuzz_harness::run`, which `cargo test` also runs on every corpus file
//! (`host-agent/tests/fuzz_corpus.rs`); see that module for the input layout and the oracle.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = layerpass::verity::fuzz_harness::run(data) {
        panic!("{e}");
    }
});

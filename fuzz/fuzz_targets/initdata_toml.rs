//! Fuzzes the CoCo initdata document the guest agent reads for `--initdata`
//! (`policy::initdata::parse`: the document, its digest, the reference values under
//! `"layerpass.toml"`). The body is `layerpass_guest::fuzz_harness::initdata_toml`, which
//! `cargo test` also runs on every corpus file (`guest-agent/tests/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = layerpass_guest::fuzz_harness::initdata_toml(data) {
        panic!("{e}");
    }
});

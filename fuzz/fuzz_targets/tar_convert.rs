//! Fuzzes the layer converter: a tar stream (plain, gzip or zstd) converted to EROFS without
//! dm-verity. The body is `layerpass::erofs::fuzz_harness`, which `cargo test` also runs on
//! every corpus file (`host-agent/tests/fuzz_corpus.rs`); see that module for the oracle.

#![no_main]

use std::sync::OnceLock;

use layerpass::erofs::fuzz_harness::TarHarness;
use libfuzzer_sys::fuzz_target;

fn harness() -> &'static TarHarness {
    static HARNESS: OnceLock<TarHarness> = OnceLock::new();
    HARNESS.get_or_init(|| TarHarness::new().expect("fuzz harness set-up"))
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness().run(data) {
        panic!("{e}");
    }
});

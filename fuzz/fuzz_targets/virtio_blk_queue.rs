//! Fuzzes what a guest controls on a virtio-blk queue (descriptor table, available ring,
//! indirect tables, request headers, data and status addresses) through the backend's own
//! queue pass. The body is `layerpass::vhost::fuzz_harness`, which `cargo test` also runs on
//! every corpus file (`host-agent/tests/fuzz_corpus.rs`); see that module for the oracle.

#![no_main]

use std::sync::OnceLock;

use layerpass::vhost::fuzz_harness::QueueHarness;
use libfuzzer_sys::fuzz_target;

fn harness() -> &'static QueueHarness {
    static HARNESS: OnceLock<QueueHarness> = OnceLock::new();
    HARNESS.get_or_init(|| QueueHarness::new().expect("fuzz harness set-up"))
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness().run(data) {
        panic!("{e}");
    }
});

//! Fuzzes the vhost-user engine end to end: one engine serving the fuzz disks, driven by
//! in-process frontends over its sockets with programs of connections, handshakes, memory
//! tables, ring set-up, requests, GET_VRING_BASE, disconnects and garbage. The body is
//! `layerpass::vhost::fuzz_harness::engine`, which `cargo test` also runs on every corpus
//! file (`host-agent/tests/fuzz_corpus.rs`); see that module for the encoding and the oracle.

#![no_main]

use std::sync::OnceLock;

use layerpass::vhost::fuzz_harness::engine::{Checks, EngineHarness};
use libfuzzer_sys::fuzz_target;

fn harness() -> &'static EngineHarness {
    static HARNESS: OnceLock<EngineHarness> = OnceLock::new();
    // libFuzzer runs inputs on one thread and starts no other: every thread and open file
    // of the process must be back after a run.
    HARNESS.get_or_init(|| EngineHarness::new(Checks::Process).expect("fuzz harness set-up"))
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness().run(data) {
        panic!("{e}");
    }
});

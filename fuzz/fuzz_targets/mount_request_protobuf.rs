//! Fuzzes a `MountRequest` as the ttrpc server decodes it (protobuf binary) through the
//! conversion to the agent's `MountPlan` and its validation; an accepted plan must survive the
//! round trip. The body is `layerpass_guest::fuzz_harness::mount_request_protobuf`, which
//! `cargo test` also runs on every corpus file (`guest-agent/tests/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = layerpass_guest::fuzz_harness::mount_request_protobuf(data) {
        panic!("{e}");
    }
});

//! Shared helpers for layerpass integration tests and the benchmark tool.

pub mod bench;
pub mod blk_client;
pub mod guest_client;
pub mod plans;
pub mod served;
pub mod snapshots;
pub mod tools;
pub mod vm;

//! Shared helpers for layerpass integration tests and the benchmark tool.

pub mod bench;
pub mod tools;

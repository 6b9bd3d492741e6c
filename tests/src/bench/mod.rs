//! Benchmarks: each measures layerpass against a named peer in the same run and prints
//! medians and ratios. They are tools, never tests with timing thresholds.

pub mod blk;
pub mod convert;
pub mod stats;
pub mod verity;

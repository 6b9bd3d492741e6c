//! Benchmark tool (filled in below).
fn main() {}

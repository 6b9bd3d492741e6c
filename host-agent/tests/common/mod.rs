//! Helpers shared by the `erofs_*` integration tests: kernel mounts with drop guards, a
//! walk of a mounted tree, the tree a tar should give (an independent model of the rules),
//! tar builders, and external tools that must be present in CI.
// Test helpers panic on unexpected failures, as the tests that call them do.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

pub mod corpus;
pub mod debian;
pub mod model;
pub mod mount;
pub mod streamgen;
pub mod tars;
pub mod tools;
pub mod walk;

//! The vhost-user-blk backend: the only module that knows vhost-user and virtio.
//!
//! [`server::Server`] binds one listener and gives every connection a fresh
//! [`backend::BlkBackend`] (one worker thread per queue, no shared lock on the data path);
//! [`request`] parses and executes virtio-blk requests against an [`crate::export::Disk`],
//! moving data directly between the disk's files and guest memory. [`fuzz_harness`] is the
//! body of the queue fuzz target, shared with the test that replays its corpus.

pub mod backend;
pub mod config;
mod error;
pub mod fuzz_harness;
pub mod queue;
pub mod request;
pub mod server;
pub mod thread;

pub use error::VhostError;

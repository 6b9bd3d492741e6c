//! The vhost-user-blk backend: the only module that knows vhost-user and virtio.
//!
//! [`engine::Engine`] serves every disk of the process with one control thread
//! ([`control`]: listening sockets and vhost-user messages, [`conn`] holding each
//! connection's protocol state and [`memory`] its shared guest memory) and a fixed pool of
//! queue workers ([`worker`], batches over a [`vring::Vring`]): threads and idle CPU do not
//! grow with the number of disks. [`request`] parses and executes virtio-blk requests against
//! an [`crate::export::Disk`], moving data directly between the disk's files and guest
//! memory; [`queue`] is one pass over a ring. [`fuzz_harness`] is the body of the fuzz
//! targets, shared with the tests that replay their corpora.

pub mod config;
mod conn;
mod control;
pub mod engine;
mod error;
mod frame;
pub mod fuzz_harness;
pub mod memory;
pub mod queue;
pub mod request;
mod vring;
mod worker;

pub use engine::{DEFAULT_POLL, Engine, EngineConfig, Export};
pub use error::VhostError;

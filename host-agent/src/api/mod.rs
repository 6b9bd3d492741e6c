//! The host API: the `HostAgent` ttrpc service (`protos/layerpass/v1/host.proto`) over a
//! unix socket. Only this module knows ttrpc on the host side of the daemon: [`convert`]
//! turns messages into the daemon's types and back, [`service`] maps each call onto
//! [`crate::daemon::Daemon`] and each error onto its code, [`server`] binds the socket,
//! [`client`] is what the CLI subcommands (and tests) call.

pub mod client;
pub mod convert;
pub mod server;
mod service;

pub use client::{ApiError, HostClient};
pub use server::ApiServer;

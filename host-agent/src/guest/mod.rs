//! The host's client of the guest agent (`GuestAgent` over ttrpc) on every transport a
//! VMM offers: vsock, hybrid vsock (a unix socket plus `CONNECT <port>`), a QEMU
//! virtio-serial chardev's unix socket, or a plain unix socket.
//!
//! [`GuestEndpoint`] is the address, written `vsock:CID:PORT`, `hvsock:PATH:PORT`,
//! `serial:PATH` or `unix:PATH`; [`GuestEndpoint::connect`] gives a connected stream
//! within a timeout, and [`GuestConnection`] makes the calls on it. See `docs/kata.md`.

mod client;
mod connect;
mod endpoint;
mod error;
mod hvsock;
mod socket;

pub use self::client::{DEFAULT_CALL_TIMEOUT, GuestConnection};
pub use self::endpoint::{GuestEndpoint, MAX_SOCKET_PATH};
pub use self::error::GuestError;
pub use self::hvsock::MAX_REPLY;

#[cfg(test)]
mod tests;

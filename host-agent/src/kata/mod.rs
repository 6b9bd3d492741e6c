//! The Kata Containers Go runtime's vhost-user store: where a vhost-user-blk export must
//! put its socket and a block device node so that Kata (`enable_vhost_user_store`) finds
//! it from an OCI device `b 241:N`.
//!
//! ```text
//! <store>/block/sockets/<name>   the vhost-user socket (QEMU connects to it)
//! <store>/block/devices/<name>   mknod b 241:<minor>, the handle an OCI spec names
//! ```
//!
//! Kata resolves `241:N` by scanning `block/devices/` (sorted by name, following
//! symlinks) for the first entry whose `st_rdev` is `241:N`, and returns
//! `block/sockets/<that name>` if it exists ([`KataStore::resolve`] does the same). The
//! minor must therefore be unique among the nodes of one store: [`allocate_minor`] picks
//! the lowest free one from [`KataStore::minors_in_use`]. See `docs/kata.md`.

mod error;
mod minor;
mod name;
mod resolve;
mod store;

pub use self::error::KataStoreError;
pub use self::minor::allocate_minor;
pub use self::name::validate_name;
pub use self::store::KataStore;

/// The block major Kata's Go runtime reads as "vhost-user-blk" (`VhostUserBlkMajor`).
pub const VHOST_USER_BLK_MAJOR: u32 = 241;
/// The block major Kata reads as "vhost-user-scsi" (`VhostUserSCSIMajor`): resolved the
/// same way, but Kata has no driver for it.
pub const VHOST_USER_SCSI_MAJOR: u32 = 242;
/// The largest minor a Linux `dev_t` holds (20 bits).
pub const MAX_MINOR: u32 = (1 << 20) - 1;
/// A store's block directory, relative to its root.
pub const BLOCK_DIR: &str = "block";
/// The sockets directory, relative to the store's root.
pub const SOCKETS_DIR: &str = "block/sockets";
/// The device nodes directory, relative to the store's root.
pub const DEVICES_DIR: &str = "block/devices";
/// Kata's default store (`vhost_user_store_path`, Go runtime).
pub const DEFAULT_STORE: &str = "/run/kata-containers/vhost-user";

#[cfg(test)]
mod tests;

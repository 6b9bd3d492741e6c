//! The shared contract types (`layerpass-types`) as protocol messages, in one place for the
//! host that builds requests and the guest that answers them.

use layerpass_types::{CorruptionMode, HashAlgorithm, VerityMapping};
use protobuf::EnumOrUnknown;

use crate::v1::guest as pb;

/// A layer's dm-verity mapping as the `VerityParams` message.
pub fn verity_params(v: &VerityMapping) -> pb::VerityParams {
    let mut out = pb::VerityParams::new();
    out.algorithm = EnumOrUnknown::new(match v.algorithm {
        HashAlgorithm::Sha256 => pb::HashAlgorithm::HASH_ALGORITHM_SHA256,
        HashAlgorithm::Sha512 => pb::HashAlgorithm::HASH_ALGORITHM_SHA512,
        HashAlgorithm::Sha1 => pb::HashAlgorithm::HASH_ALGORITHM_SHA1,
    });
    out.format = v.format;
    out.data_block_size = v.data_block_size;
    out.hash_block_size = v.hash_block_size;
    out.data_blocks = v.data_blocks;
    out.hash_start_block = v.hash_start_block;
    out.salt.clone_from(&v.salt);
    out.root_hash.clone_from(&v.root_hash);
    out.on_corruption = EnumOrUnknown::new(match v.on_corruption {
        CorruptionMode::Eio => pb::CorruptionMode::CORRUPTION_MODE_EIO,
        CorruptionMode::Restart => pb::CorruptionMode::CORRUPTION_MODE_RESTART,
        CorruptionMode::Panic => pb::CorruptionMode::CORRUPTION_MODE_PANIC,
    });
    out
}

/// The whole disk with `serial`.
pub fn disk_serial(serial: &str) -> pb::DiskRef {
    let mut d = pb::DiskRef::new();
    d.set_serial(serial.to_owned());
    d
}

/// The GPT partition `name` of the disk with `serial`.
pub fn disk_partition(serial: &str, name: &str) -> pb::DiskRef {
    let mut p = pb::Partition::new();
    p.serial = serial.to_owned();
    p.name = name.to_owned();
    let mut d = pb::DiskRef::new();
    d.set_partition(p);
    d
}

//! dm-verity: the device name, uuid and table line for a layer (pure functions), and
//! the create → load → resume → node sequence with its undo.

use crate::kernel::{DevNum, DmTarget};
use crate::plan::{CorruptionMode, VerityParams};

/// Prefix of every device-mapper device the agent creates.
pub const DM_NAME_PREFIX: &str = "lp-";

/// The device name for a root hash: `lp-<first 32 hex digits>`.
pub fn dm_name(params: &VerityParams) -> String {
    let hex = params.root_hash_hex();
    format!("{DM_NAME_PREFIX}{}", &hex[..hex.len().min(32)])
}

/// The device uuid: `LAYERPASS-<algorithm>-<root hash, at most 64 hex digits>` (unique
/// per root hash; at most 81 characters, within DM's 128).
pub fn dm_uuid(params: &VerityParams) -> String {
    let hex = params.root_hash_hex();
    format!(
        "LAYERPASS-{}-{}",
        params.algorithm.name(),
        &hex[..hex.len().min(64)]
    )
}

/// Length of the verity target in 512-byte sectors: the data area.
pub fn data_sectors(params: &VerityParams) -> u64 {
    params.data_blocks * u64::from(params.data_block_size) / 512
}

/// Bytes the device must have: the data plus at least the root hash block.
pub fn min_device_bytes(params: &VerityParams) -> u64 {
    (params.hash_start_block + 1).saturating_mul(u64::from(params.hash_block_size))
}

/// The verity target's parameters, data and hash on the same device:
/// `<format> <dev> <dev> <dbs> <hbs> <blocks> <hash_start> <alg> <root> <salt|-> [1 <mode>]`.
pub fn table_params(dev: DevNum, params: &VerityParams) -> String {
    let salt = if params.salt.is_empty() {
        "-".to_owned()
    } else {
        hex::encode(&params.salt)
    };
    let mut line = format!(
        "{} {dev} {dev} {} {} {} {} {} {} {salt}",
        params.format,
        params.data_block_size,
        params.hash_block_size,
        params.data_blocks,
        params.hash_start_block,
        params.algorithm.name(),
        params.root_hash_hex(),
    );
    match params.on_corruption {
        CorruptionMode::Eio => {}
        CorruptionMode::Restart => line.push_str(" 1 restart_on_corruption"),
        CorruptionMode::Panic => line.push_str(" 1 panic_on_corruption"),
    }
    line
}

/// The one-target table for a layer.
pub fn table(dev: DevNum, params: &VerityParams) -> DmTarget {
    DmTarget {
        start: 0,
        length: data_sectors(params),
        target_type: "verity".to_owned(),
        params: table_params(dev, params),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::HashAlgorithm;

    fn params() -> VerityParams {
        VerityParams {
            algorithm: HashAlgorithm::Sha256,
            format: 1,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 5,
            hash_start_block: 6,
            salt: vec![0xab; 32],
            root_hash: (0u8..32).collect(),
            on_corruption: CorruptionMode::Eio,
        }
    }

    #[test]
    fn table_line_matches_the_kernel_format() {
        let t = table(
            DevNum {
                major: 254,
                minor: 16,
            },
            &params(),
        );
        assert_eq!(t.start, 0);
        assert_eq!(t.length, 40);
        assert_eq!(t.target_type, "verity");
        assert_eq!(
            t.params,
            format!(
                "1 254:16 254:16 4096 4096 5 6 sha256 \
                 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f {}",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn empty_salt_is_a_dash_and_corruption_modes_add_one_option() {
        let mut p = params();
        p.salt.clear();
        p.on_corruption = CorruptionMode::Restart;
        let line = table_params(DevNum { major: 8, minor: 0 }, &p);
        assert!(line.ends_with(" - 1 restart_on_corruption"), "{line}");
        p.on_corruption = CorruptionMode::Panic;
        let line = table_params(DevNum { major: 8, minor: 0 }, &p);
        assert!(line.ends_with(" - 1 panic_on_corruption"), "{line}");
    }

    #[test]
    fn names_come_from_the_root_hash() {
        let p = params();
        assert_eq!(dm_name(&p), "lp-000102030405060708090a0b0c0d0e0f");
        assert_eq!(
            dm_uuid(&p),
            "LAYERPASS-sha256-000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert!(
            dm_uuid(&VerityParams {
                algorithm: HashAlgorithm::Sha512,
                root_hash: vec![1; 64],
                ..p
            })
            .len()
                <= 128
        );
        assert_eq!(min_device_bytes(&params()), 7 * 4096);
    }
}

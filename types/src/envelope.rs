//! The supported envelope, stated once. What the host can *format* (veritysetup's range) is
//! wider than what can be *exported to a guest*: a guest's dm-verity takes blocks from the
//! disk's logical block size up to the page size. The export and plan paths refuse what the
//! guest would refuse, with an error naming the parameter and the limit.

use crate::TypeError;

/// Smallest dm-verity block `layerpass verity format` writes.
pub const FORMAT_MIN_BLOCK_SIZE: u32 = 512;
/// Largest dm-verity block `layerpass verity format` writes (veritysetup's limit).
pub const FORMAT_MAX_BLOCK_SIZE: u32 = 65536;
/// Largest dm-verity block a guest kernel maps: the page size (4096 on x86_64 and the
/// 4 KiB-page arm64 kernels the VMMs boot).
pub const GUEST_MAX_BLOCK_SIZE: u32 = 4096;
/// The logical block size every exported disk advertises today (`VIRTIO_BLK_F_BLK_SIZE`).
/// dm-verity refuses data or hash blocks smaller than the device's logical block size.
pub const DEFAULT_LOGICAL_BLOCK_SIZE: u32 = 4096;
/// Logical block sizes a disk may advertise.
pub const LOGICAL_BLOCK_SIZES: [u32; 4] = [512, 1024, 2048, 4096];
/// Longest dm-verity salt (the superblock's field).
pub const MAX_SALT_LEN: usize = 256;
/// overlayfs stacks at most this many lower layers (`OVL_MAX_STACK`).
pub const MAX_LAYERS: usize = 500;

/// A block size `layerpass verity format` can write: a power of two from 512 to 65536.
///
/// # Errors
/// [`TypeError::Verity`] naming `parameter`, the value and the limits.
pub fn check_format_block_size(parameter: &'static str, size: u32) -> Result<(), TypeError> {
    check_range(
        parameter,
        size,
        FORMAT_MIN_BLOCK_SIZE,
        FORMAT_MAX_BLOCK_SIZE,
        "formatted",
    )
}

/// A block size a guest maps on a disk whose logical block size is `logical`: a power of
/// two from `logical` to the page size.
///
/// # Errors
/// [`TypeError::Verity`] naming `parameter`, the value and the limits.
pub fn check_guest_block_size(
    parameter: &'static str,
    size: u32,
    logical: u32,
) -> Result<(), TypeError> {
    check_range(
        parameter,
        size,
        logical,
        GUEST_MAX_BLOCK_SIZE,
        &format!("exported to a guest on a disk with {logical}-byte logical blocks"),
    )
}

/// A logical block size a disk may advertise: 512, 1024, 2048 or 4096.
///
/// # Errors
/// [`TypeError::Verity`] naming `logical_block_size`.
pub fn check_logical_block_size(size: u32) -> Result<(), TypeError> {
    if LOGICAL_BLOCK_SIZES.contains(&size) {
        Ok(())
    } else {
        Err(TypeError::Verity {
            parameter: "logical_block_size",
            value: size.to_string(),
            reason: format!("a disk advertises one of {LOGICAL_BLOCK_SIZES:?}"),
        })
    }
}

fn check_range(
    parameter: &'static str,
    size: u32,
    min: u32,
    max: u32,
    what: &str,
) -> Result<(), TypeError> {
    if size.is_power_of_two() && (min..=max).contains(&size) {
        Ok(())
    } else {
        Err(TypeError::Verity {
            parameter,
            value: size.to_string(),
            reason: format!("a layer {what} needs a power of two from {min} to {max}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_wider_than_export() {
        for s in [512, 4096, 8192, 65536] {
            check_format_block_size("data_block_size", s).unwrap();
        }
        for s in [0, 256, 1000, 131_072] {
            assert!(
                check_format_block_size("data_block_size", s).is_err(),
                "{s}"
            );
        }
        check_guest_block_size("data_block_size", 4096, 4096).unwrap();
        check_guest_block_size("data_block_size", 512, 512).unwrap();
        let e = check_guest_block_size("data_block_size", 8192, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "verity data_block_size 8192: a layer exported to a guest on a disk with \
             4096-byte logical blocks needs a power of two from 4096 to 4096"
        );
        assert!(check_guest_block_size("hash_block_size", 512, 4096).is_err());
        check_logical_block_size(512).unwrap();
        assert!(check_logical_block_size(8192).is_err());
    }
}

//! The names an export gets: its key from the checked ids, its disks' serials and socket
//! file names, all derived from (sandbox, container) so that a restarted daemon and a
//! runtime see the same ones.

use std::path::Path;

use layerpass_types::naming::validate_container_id;
use sha2::{Digest as _, Sha256};

use super::DaemonError;
use crate::state::ExportKey;

/// `sun_path` holds 108 bytes with the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;
/// Every serial the daemon makes starts with this.
pub const SERIAL_PREFIX: &str = "lp";

/// Checks both ids with the guest's container-id rule (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at
/// most 128 bytes) and makes the key.
pub fn export_key(sandbox: &str, container: &str) -> Result<ExportKey, DaemonError> {
    for (what, value) in [("sandbox id", sandbox), ("container id", container)] {
        validate_container_id(value).map_err(|e| DaemonError::BadId {
            what,
            value: value.to_owned(),
            reason: match e {
                layerpass_types::TypeError::BadName { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
    }
    Ok(ExportKey {
        sandbox: sandbox.to_owned(),
        container: container.to_owned(),
    })
}

/// The export's serial stem: `lp` + 12 hex digits of sha256(sandbox NUL container).
pub fn serial_stem(key: &ExportKey) -> String {
    let mut h = Sha256::new();
    h.update(key.sandbox.as_bytes());
    h.update([0]);
    h.update(key.container.as_bytes());
    let d = h.finalize();
    format!("{SERIAL_PREFIX}{}", hex::encode(&d[..6]))
}

/// Most layers an export can have: `lp<12 hex>-l9999` is 20 bytes, the virtio-blk limit
/// (overlayfs itself stacks at most 500).
pub const MAX_LAYERS: usize = 10_000;

/// The serial of layer disk `index` (top layer 0): `lp<12 hex>-l<index>`, at most 20 bytes
/// below [`MAX_LAYERS`].
pub fn layer_serial(stem: &str, index: usize) -> String {
    format!("{stem}-l{index}")
}

/// The composite disk's serial.
pub fn composite_serial(stem: &str) -> String {
    format!("{stem}-c")
}

/// The scratch disk's serial.
pub fn scratch_serial(stem: &str) -> String {
    format!("{stem}-s")
}

/// Whether `name` (a socket, node or scratch file name without extension) is one the daemon
/// makes: `lp` + 12 hex + `-` + `l<digits>` | `c` | `s`.
pub fn is_daemon_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(SERIAL_PREFIX) else {
        return false;
    };
    let (hex, tail) = rest.split_at_checked(12).unwrap_or(("", ""));
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    match tail.strip_prefix('-') {
        Some("c" | "s") => true,
        Some(t) => t
            .strip_prefix('l')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Refuses a socket path a unix socket address cannot hold.
pub fn check_socket_path(path: &Path) -> Result<(), DaemonError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(DaemonError::SocketPath {
            path: path.to_owned(),
            len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_fit_virtio_and_are_recognised() {
        let key = export_key("sandbox-1", "c.2_x").unwrap();
        let stem = serial_stem(&key);
        assert_eq!(stem.len(), 14);
        for s in [
            layer_serial(&stem, 0),
            layer_serial(&stem, MAX_LAYERS - 1),
            composite_serial(&stem),
            scratch_serial(&stem),
        ] {
            assert!(s.len() <= 20, "{s}");
            assert!(is_daemon_name(&s), "{s}");
            layerpass_types::naming::validate_serial(&s).unwrap();
        }
        assert_ne!(
            stem,
            serial_stem(&export_key("sandbox-1", "c.2_y").unwrap())
        );
        // the NUL separator: ("ab", "c") and ("a", "bc") differ
        assert_ne!(
            serial_stem(&export_key("ab", "c").unwrap()),
            serial_stem(&export_key("a", "bc").unwrap())
        );
        for not in [
            "lp",
            "lpxyz",
            "lp0123456789ab",
            "lp0123456789ab-l",
            "lp0123456789ab-x",
            "xx0123456789ab-c",
            "lp0123456789ab-l1a",
        ] {
            assert!(!is_daemon_name(not), "{not}");
        }
    }

    #[test]
    fn ids_follow_the_rule() {
        for bad in ["", "a/b", "../x", "-a", "a b", "é", &"a".repeat(129)] {
            let e = export_key(bad, "c").unwrap_err().to_string();
            assert!(e.starts_with("sandbox id"), "{e}");
            let e = export_key("s", bad).unwrap_err().to_string();
            assert!(e.starts_with("container id"), "{e}");
        }
    }

    #[test]
    fn socket_paths_fit_sun_path() {
        check_socket_path(Path::new(&format!("/{}", "a".repeat(106)))).unwrap();
        let e = check_socket_path(Path::new(&format!("/{}", "a".repeat(107)))).unwrap_err();
        assert!(matches!(e, DaemonError::SocketPath { len: 108, .. }), "{e}");
    }
}

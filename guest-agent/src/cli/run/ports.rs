//! The virtio-serial ports `run` writes to, found by name without udev: the
//! `/sys/class/virtio-ports/<vportNpM>/name` file holding the name gives the device
//! `/dev/<vportNpM>`. An absolute path is opened (created) as is: a file or fifo in tests.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layerpass_protocols::status::Kind;

use crate::cli::Failure;

/// Where the kernel lists virtio-serial ports.
pub const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// How often to look again for a port that is not there yet.
const POLL: Duration = Duration::from_millis(50);

/// The device directory name (`vport1p2`) of the port called `name` under `sys_dir`.
pub fn find_port(sys_dir: &Path, name: &str) -> io::Result<Option<String>> {
    let entries = match std::fs::read_dir(sys_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(port_name) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if port_name.trim_end() == name {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

fn failure(kind: Kind, message: String) -> Failure {
    Failure::new(kind, message)
}

/// Opens the port `name` (or the absolute path) for writing, waiting up to `timeout`
/// for a named port to appear.
pub fn open_port(name: &str, timeout: Duration) -> Result<File, Failure> {
    open_port_in(Path::new(VIRTIO_PORTS), Path::new("/dev"), name, timeout)
}

/// [`open_port`] with the sysfs and dev directories given.
pub fn open_port_in(
    sys_dir: &Path,
    dev_dir: &Path,
    name: &str,
    timeout: Duration,
) -> Result<File, Failure> {
    if name.starts_with('/') {
        return OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(name)
            .map_err(|e| failure(Kind::of_io(&e), format!("cannot open {name}: {e}")));
    }
    if name.is_empty() || name.contains('/') {
        return Err(failure(
            Kind::InvalidArgument,
            format!("port {name:?}: a virtio-serial port name (no '/') or an absolute path"),
        ));
    }
    let start = Instant::now();
    loop {
        let found = find_port(sys_dir, name).map_err(|e| {
            failure(
                Kind::of_io(&e),
                format!("cannot list {}: {e}", sys_dir.display()),
            )
        })?;
        if let Some(dev) = found {
            let path: PathBuf = dev_dir.join(&dev);
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    tracing::debug!(port = name, device = %path.display(), "port open");
                    return Ok(file);
                }
                // devtmpfs has not made the node yet
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(failure(
                        Kind::of_io(&e),
                        format!("cannot open port {name} ({}): {e}", path.display()),
                    ));
                }
            }
        }
        if start.elapsed() >= timeout {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "no virtio-serial port {name:?} appeared within {:.1} s",
                    timeout.as_secs_f64()
                ),
            ));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_found_by_the_name_file() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let dev = dir.path().join("dev");
        for (port, name) in [
            ("vport1p1", "layerpass.agent"),
            ("vport1p2", "layerpass.status"),
        ] {
            std::fs::create_dir_all(sys.join(port)).unwrap();
            std::fs::write(sys.join(port).join("name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir(&dev).unwrap();
        std::fs::write(dev.join("vport1p2"), "").unwrap();
        assert_eq!(
            find_port(&sys, "layerpass.status").unwrap().as_deref(),
            Some("vport1p2")
        );
        assert_eq!(find_port(&sys, "layerpass").unwrap(), None);
        assert_eq!(find_port(&dir.path().join("none"), "x").unwrap(), None);
        open_port_in(&sys, &dev, "layerpass.status", Duration::ZERO).unwrap();

        // the node of vport1p1 never appears
        let f =
            open_port_in(&sys, &dev, "layerpass.agent", Duration::from_millis(120)).unwrap_err();
        assert_eq!(f.kind, Kind::NotFound);
        assert!(f.message.contains("\"layerpass.agent\""), "{}", f.message);

        let f = open_port_in(&sys, &dev, "a/b", Duration::ZERO).unwrap_err();
        assert_eq!(f.kind, Kind::InvalidArgument);
    }

    #[test]
    fn an_absolute_path_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        open_port(path.to_str().unwrap(), Duration::ZERO).unwrap();
        assert!(path.is_file());
        let f = open_port("/nonexistent-dir/status", Duration::ZERO).unwrap_err();
        assert_eq!(f.kind, Kind::NotFound);
    }
}

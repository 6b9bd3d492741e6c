//! Device-mapper through the `devicemapper` crate: read-only devices (verity) and writable
//! ones (the encrypted upper), no udev
//! (`DmOptions::private()` plus `DM_UDEV_DISABLE_DM_RULES_FLAG`; the crate skips the udev
//! cookie when `/run/udev/control` does not exist).

use std::io;
use std::sync::OnceLock;

use devicemapper::{DM, DevId, DmError, DmFlags, DmName, DmOptions, DmUdevFlags, DmUuid};
use rustix::io::Errno;

use crate::kernel::{DevNum, DmTarget};

/// Lazily opened `/dev/mapper/control`: plans without verity work without dm-mod.
#[derive(Default)]
pub struct DeviceMapper {
    dm: OnceLock<DM>,
}

impl std::fmt::Debug for DeviceMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMapper")
            .field("open", &self.dm.get().is_some())
            .finish()
    }
}

/// A devicemapper error as an `io::Error`, keeping the errno of a failed ioctl.
fn to_io(what: &str, err: &DmError) -> io::Error {
    if let DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, errno)) = err {
        let e = io::Error::from_raw_os_error(**errno as i32);
        return io::Error::new(e.kind(), format!("{what}: {e}"));
    }
    io::Error::other(format!("{what}: {err}"))
}

fn no_udev() -> DmOptions {
    let o = DmOptions::private();
    let flags = o.udev_flags() | DmUdevFlags::DM_UDEV_DISABLE_DM_RULES_FLAG;
    o.set_udev_flags(flags)
}

fn read_only() -> DmOptions {
    no_udev().set_flags(DmFlags::DM_READONLY)
}

/// Read-only or writable.
fn access(writable: bool) -> DmOptions {
    if writable { no_udev() } else { read_only() }
}

fn name(n: &str) -> io::Result<&DmName> {
    DmName::new(n).map_err(|e| to_io("device name", &e))
}

impl DeviceMapper {
    fn dm(&self) -> io::Result<&DM> {
        if let Some(dm) = self.dm.get() {
            return Ok(dm);
        }
        let dm = DM::new().map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("opening /dev/mapper/control (is dm-mod loaded?): {e}"),
            )
        })?;
        // Another thread may have won the race; either handle works.
        let _ = self.dm.set(dm);
        self.dm
            .get()
            .ok_or_else(|| io::Error::other("device-mapper handle vanished"))
    }

    pub fn create(&self, n: &str, uuid: &str, writable: bool) -> io::Result<DevNum> {
        let uuid = DmUuid::new(uuid).map_err(|e| to_io("device uuid", &e))?;
        let info = self
            .dm()?
            .device_create(name(n)?, Some(uuid), access(writable))
            .map_err(|e| to_io("DM_DEV_CREATE", &e))?;
        let d = info.device();
        Ok(DevNum {
            major: d.major,
            minor: d.minor,
        })
    }

    pub fn load(&self, n: &str, targets: &[DmTarget], writable: bool) -> io::Result<()> {
        let table: Vec<_> = targets
            .iter()
            .map(|t| (t.start, t.length, t.target_type.clone(), t.params.clone()))
            .collect();
        if let Some(t) = targets.iter().find(|t| t.target_type.len() >= 16) {
            // The crate asserts on DM_MAX_TYPE_NAME; refuse instead of panicking.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("target type {:?} is too long", t.target_type),
            ));
        }
        self.dm()?
            .table_load(&DevId::Name(name(n)?), &table, access(writable))
            .map_err(|e| to_io("DM_TABLE_LOAD", &e))?;
        Ok(())
    }

    pub fn resume(&self, n: &str) -> io::Result<()> {
        self.dm()?
            .device_suspend(&DevId::Name(name(n)?), no_udev())
            .map_err(|e| to_io("DM_DEV_SUSPEND (resume)", &e))?;
        Ok(())
    }

    pub fn remove(&self, n: &str) -> io::Result<()> {
        self.dm()?
            .device_remove(&DevId::Name(name(n)?), no_udev())
            .map_err(|e| to_io("DM_DEV_REMOVE", &e))?;
        Ok(())
    }

    pub fn status(&self, n: &str) -> io::Result<Option<String>> {
        let id = DevId::Name(name(n)?);
        match self.dm()?.table_status(&id, no_udev()) {
            Ok((_, targets)) => Ok(Some(
                targets
                    .into_iter()
                    .map(|(_, _, _, status)| status)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            Err(e) => {
                let e = to_io("DM_TABLE_STATUS", &e);
                if Errno::from_io_error(&e) == Some(Errno::NXIO)
                    || e.kind() == io::ErrorKind::NotFound
                {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

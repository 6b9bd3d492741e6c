//! `layerpass plan`: the guest's mount plan for given layer files, on stdout, so a user can
//! drive `layerpass-guest mount --plan` without writing JSON by hand.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use layerpass::export::spec::LayerFileSpec;
use layerpass::plan::{FilesPlan, Upper};

use super::{Outcome, emit};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The container's id.
    #[arg(long, value_name = "ID")]
    container: String,
    /// The layers are the partitions of the composite disk with this serial (as
    /// `layerpass blk serve --composite` exports them; its default serial is lp-composite).
    #[arg(long, value_name = "SERIAL")]
    composite: Option<String>,
    /// The writable upper: `tmpfs:SIZE` (bytes, or with K, M, G, T),
    /// `disk:SERIAL[:FSTYPE]` (FSTYPE ext4 by default, or xfs) or `encrypted-disk:SERIAL`
    /// (the scratch disk under dm-integrity and dm-crypt with a key the guest makes,
    /// formatted by the guest at every mount; the only disk a confidential guest accepts).
    #[arg(
        long,
        value_name = "tmpfs:SIZE|disk:SERIAL[:FSTYPE]|encrypted-disk:SERIAL",
        default_value = "tmpfs:64M",
        value_parser = parse_upper
    )]
    upper: Upper,
    /// Where the guest mounts the rootfs, relative to the guest agent's rootfs root
    /// (default: the container id).
    #[arg(long, value_name = "PATH")]
    mount_point: Option<PathBuf>,
    /// Plan a layer without a .dmverity sidecar without dm-verity instead of failing (a
    /// guest that requires verity refuses it).
    #[arg(long)]
    allow_unverified: bool,
    /// The layers, top first: FILE[:TREE][@DIGEST][=SERIAL]. Without --composite each is a
    /// whole disk with that serial, by default the one `blk serve` picks (the file name).
    #[arg(required = true, value_name = "LAYER")]
    layers: Vec<String>,
}

impl PlanArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let layers = self
            .layers
            .iter()
            .map(|s| LayerFileSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mount_point = self
            .mount_point
            .map(|p| {
                p.to_str()
                    .map(str::to_owned)
                    .with_context(|| format!("--mount-point {} is not UTF-8", p.display()))
            })
            .transpose()?;
        let request = FilesPlan {
            container_id: self.container,
            layers,
            composite: self.composite,
            upper: self.upper,
            mount_point,
            allow_unverified: self.allow_unverified,
        }
        .build()?;
        emit(&layerpass_protocols::json::print_plan(&request)?)?;
        Ok(Outcome::Success)
    }
}

/// `tmpfs:SIZE`, `disk:SERIAL[:FSTYPE]` or `encrypted-disk:SERIAL`.
fn parse_upper(s: &str) -> Result<Upper, String> {
    if let Some(size) = s.strip_prefix("tmpfs:") {
        return super::blk::parse_size(size).map(|size_bytes| Upper::Tmpfs { size_bytes });
    }
    if let Some(serial) = s.strip_prefix("encrypted-disk:") {
        if serial.is_empty() {
            return Err(format!("{s:?}: encrypted-disk:SERIAL needs a serial"));
        }
        if serial.contains(':') {
            return Err(format!(
                "{s:?}: encrypted-disk:SERIAL takes no filesystem (the guest formats the disk)"
            ));
        }
        return Ok(Upper::EncryptedDisk {
            serial: serial.to_owned(),
        });
    }
    if let Some(rest) = s.strip_prefix("disk:") {
        let (serial, fs_type) = rest.split_once(':').unwrap_or((rest, "ext4"));
        if serial.is_empty() {
            return Err(format!("{s:?}: disk:SERIAL needs a serial"));
        }
        return Ok(Upper::Disk {
            serial: serial.to_owned(),
            fs_type: fs_type.to_owned(),
        });
    }
    Err(format!(
        "{s:?} is none of tmpfs:SIZE, disk:SERIAL[:FSTYPE], encrypted-disk:SERIAL"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppers() {
        assert_eq!(
            parse_upper("tmpfs:1G"),
            Ok(Upper::Tmpfs {
                size_bytes: 1 << 30
            })
        );
        assert_eq!(
            parse_upper("disk:scratch"),
            Ok(Upper::Disk {
                serial: "scratch".into(),
                fs_type: "ext4".into()
            })
        );
        assert_eq!(
            parse_upper("disk:s:xfs"),
            Ok(Upper::Disk {
                serial: "s".into(),
                fs_type: "xfs".into()
            })
        );
        assert_eq!(
            parse_upper("encrypted-disk:scratch"),
            Ok(Upper::EncryptedDisk {
                serial: "scratch".into()
            })
        );
        for bad in [
            "tmpfs:",
            "tmpfs:1X",
            "disk:",
            "nfs:x",
            "",
            "encrypted-disk:",
            "encrypted-disk",
            "encrypted:s",
        ] {
            assert!(parse_upper(bad).is_err(), "{bad}");
        }
        let err = parse_upper("encrypted-disk:s:ext4").unwrap_err();
        assert!(err.contains("takes no filesystem"), "{err}");
        let err = parse_upper("encrypted-disk:").unwrap_err();
        assert!(err.contains("needs a serial"), "{err}");
        let err = parse_upper("nfs:x").unwrap_err();
        assert!(err.contains("encrypted-disk:SERIAL"), "{err}");
    }
}

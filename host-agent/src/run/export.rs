//! The run's export: with the daemon's own code in this process, or through a running
//! daemon's API (`--daemon SOCKET`). Either way the answer is the API's `ExportResponse`
//! (disks with their sockets, and the plan), and dropping the export undoes it.

use std::path::Path;
use std::time::Duration;

use layerpass_protocols::protobuf::{EnumOrUnknown, MessageField};
use layerpass_protocols::v1::host as pb;

use super::error::RunError;
use super::options::RunOptions;
use crate::api::HostClient;
use crate::api::convert::export_response;
use crate::convert::LayerFormat;
use crate::daemon::config::{Config, ExportMode, UpperKind, VerityMode};
use crate::daemon::disks::UpperRequest;
use crate::daemon::{Daemon, ExportSpec, SourceSpec};
use crate::microvm::AssetCache;
use crate::vhost::config::MAX_QUEUES;

/// The container id of a run's one container.
pub const CONTAINER: &str = "main";
/// Default upper size.
pub const DEFAULT_SCRATCH: u64 = 1 << 30;
/// How long a running daemon may take to answer.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// An export, undone (sockets and scratch files removed) on drop.
#[derive(Debug)]
pub enum Exported {
    /// Served by a daemon in this process, stopped on drop.
    Local {
        /// The daemon.
        daemon: Box<Daemon>,
        /// The sandbox id.
        sandbox: String,
    },
    /// Served by a running daemon.
    Remote {
        /// Its API.
        client: HostClient,
        /// The sandbox id.
        sandbox: String,
    },
}

impl Drop for Exported {
    fn drop(&mut self) {
        match self {
            Self::Local { daemon, sandbox } => {
                if let Err(e) = daemon.unexport(sandbox, CONTAINER) {
                    tracing::warn!(error = %e, "unexporting the run's layers");
                }
                daemon.shutdown();
            }
            Self::Remote { client, sandbox } => {
                if let Err(e) = client.unexport(sandbox, CONTAINER) {
                    tracing::warn!(error = %e, "unexporting the run's layers from the daemon");
                }
            }
        }
    }
}

/// Exports `image` for the run; `tmp` is the run's own directory (sockets and state of
/// an in-process daemon), `unique` makes the sandbox id unique on a shared daemon.
pub fn export(
    opts: &RunOptions,
    cache: &AssetCache,
    tmp: &Path,
    image: &Path,
    unique: &str,
) -> Result<(Exported, pb::ExportResponse), RunError> {
    let sandbox: String = format!("run-{}-{unique}", std::process::id())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let image = std::path::absolute(image).map_err(RunError::io("resolve", image))?;
    let spec = ExportSpec {
        sandbox: sandbox.clone(),
        container: CONTAINER.to_owned(),
        source: SourceSpec::Image {
            path: image,
            platform: opts.platform.clone(),
            format: Some(opts.layer_format),
        },
        mode: Some(opts.mode),
        upper: Some(UpperRequest {
            kind: opts.upper,
            size: Some(opts.scratch_size.unwrap_or(DEFAULT_SCRATCH)),
        }),
        guest: None,
    };
    if let Some(socket) = &opts.daemon {
        let client = HostClient::connect(socket, API_TIMEOUT)?;
        let response = client.export(&request(&spec));
        let exported = Exported::Remote { client, sandbox };
        return Ok((exported, response?));
    }
    let run_dir = tmp.join("run");
    let config = Config {
        state_dir: tmp.join("state"),
        cache_dir: cache.dir().to_owned(),
        api_socket: run_dir.join("api.sock"),
        run_dir,
        export_mode: opts.mode,
        upper: opts.upper,
        scratch_size: opts.scratch_size.unwrap_or(DEFAULT_SCRATCH),
        verity: VerityMode::RequireSidecar,
        layer_format: opts.layer_format,
        kata_vhost_user_store: None,
        queues: usize::try_from(opts.cpus).unwrap_or(1).clamp(1, MAX_QUEUES),
        workers: usize::try_from(opts.cpus).unwrap_or(1).clamp(1, 2),
        ..Config::default()
    };
    let daemon = Daemon::start(config)?;
    let outcome = daemon.export(&spec);
    let exported = Exported::Local {
        daemon: Box::new(daemon),
        sandbox,
    };
    let outcome = outcome?;
    Ok((exported, export_response(&outcome)))
}

/// The API request for an image export.
pub fn request(spec: &ExportSpec) -> pb::ExportRequest {
    let mut req = pb::ExportRequest::new();
    req.sandbox_id.clone_from(&spec.sandbox);
    req.container_id.clone_from(&spec.container);
    if let SourceSpec::Image {
        path,
        platform,
        format,
    } = &spec.source
    {
        let mut i = pb::OciImage::new();
        i.path = path.display().to_string();
        i.platform = platform.clone().unwrap_or_default();
        i.layer_format = EnumOrUnknown::new(match format {
            None => pb::LayerFormat::LAYER_FORMAT_UNSPECIFIED,
            Some(LayerFormat::Full) => pb::LayerFormat::LAYER_FORMAT_FULL,
            Some(LayerFormat::Index) => pb::LayerFormat::LAYER_FORMAT_INDEX,
        });
        req.set_image(i);
    }
    req.mode = EnumOrUnknown::new(match spec.mode {
        None => pb::ExportMode::EXPORT_MODE_UNSPECIFIED,
        Some(ExportMode::PerLayer) => pb::ExportMode::EXPORT_MODE_PER_LAYER,
        Some(ExportMode::Composite) => pb::ExportMode::EXPORT_MODE_COMPOSITE,
    });
    if let Some(u) = spec.upper {
        let mut size = pb::UpperSize::new();
        size.size_bytes = u.size.unwrap_or(0);
        let mut choice = pb::UpperChoice::new();
        match u.kind {
            UpperKind::Tmpfs => choice.set_tmpfs(size),
            UpperKind::Disk => choice.set_disk(size),
            UpperKind::EncryptedDisk => choice.set_encrypted_disk(size),
        }
        req.upper = MessageField::some(choice);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::convert::export_spec;

    /// What the API turns the request back into is the spec it was made from.
    #[test]
    fn the_request_round_trips_through_the_api_conversion() {
        for (mode, kind, format) in [
            (
                ExportMode::PerLayer,
                UpperKind::Tmpfs,
                Some(LayerFormat::Index),
            ),
            (ExportMode::Composite, UpperKind::EncryptedDisk, None),
            (
                ExportMode::PerLayer,
                UpperKind::Disk,
                Some(LayerFormat::Full),
            ),
        ] {
            let spec = ExportSpec {
                sandbox: "run-1-x".into(),
                container: CONTAINER.into(),
                source: SourceSpec::Image {
                    path: "/images/sample".into(),
                    platform: Some("linux/amd64".into()),
                    format,
                },
                mode: Some(mode),
                upper: Some(UpperRequest {
                    kind,
                    size: Some(64 << 20),
                }),
                guest: None,
            };
            let back = export_spec(&request(&spec)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.sandbox, spec.sandbox);
            assert_eq!(back.container, spec.container);
            assert_eq!(back.mode, spec.mode);
            assert_eq!(back.upper, spec.upper);
            assert!(matches!(
                back.source,
                SourceSpec::Image { ref path, ref platform, format: f }
                    if path == Path::new("/images/sample")
                        && platform.as_deref() == Some("linux/amd64")
                        && f == format
            ));
        }
    }
}

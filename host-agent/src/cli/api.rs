//! `layerpass export|unexport|list|status`: thin clients of the daemon's API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, ValueEnum};
use layerpass::api::HostClient;
use layerpass::api::client::DEFAULT_TIMEOUT;
use layerpass::api::convert::endpoint_to_pb;
use layerpass::containerd::{self, MountEntry};
use layerpass::guest::GuestEndpoint;
use layerpass_protocols::protobuf::{EnumOrUnknown, MessageField};
use layerpass_protocols::status::HasKind;
use layerpass_protocols::v1::host as pb;
use serde_json::{Value, json};

use super::serve::load_config;
use super::{Outcome, emit};

/// Where the daemon is.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The daemon's API socket; default: `api_socket` of the configuration.
    #[arg(long, value_name = "SOCKET")]
    api: Option<PathBuf>,
    /// The configuration file that names the API socket.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<HostClient> {
        let socket = match &self.api {
            Some(s) => s.clone(),
            None => load_config(self.config.as_ref())?.api_socket,
        };
        Ok(HostClient::connect(&socket, DEFAULT_TIMEOUT)?)
    }
}

/// An API error with its kind's name first, e.g. `AlreadyExists: ...`.
fn api_err(e: &layerpass::api::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {e}", e.kind().name())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    PerLayer,
    Composite,
}

/// `--layer-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LayerFormatArg {
    /// A full EROFS image per layer.
    Full,
    /// An index layer over the layer's tar.
    Index,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["mounts", "image"])))]
pub struct ExportArgs {
    /// The sandbox (VM) id.
    #[arg(long, value_name = "ID")]
    sandbox: String,
    /// The container id (unique within the sandbox).
    #[arg(long, value_name = "ID")]
    container: String,
    /// containerd's mount list (a JSON array of {type, source, options}); `-` reads stdin.
    #[arg(long, value_name = "MOUNTS.json")]
    mounts: Option<PathBuf>,
    /// An OCI image layout directory, OCI layout tar or `docker save` archive.
    #[arg(long, value_name = "IMAGE")]
    image: Option<PathBuf>,
    /// With --image: the platform (os/arch[/variant]) of an index.
    #[arg(long, value_name = "PLATFORM", requires = "image")]
    platform: Option<String>,
    /// With --image: each layer an index layer (EROFS metadata over its tar, 512-byte
    /// blocks; docs/tar-index.md) or a full EROFS image (default: the daemon's
    /// `layer_format`).
    #[arg(long, value_enum, value_name = "FORMAT", requires = "image")]
    layer_format: Option<LayerFormatArg>,
    /// One disk per layer, or one GPT disk with a partition per layer (default: the
    /// daemon's `export_mode`).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// The upper: tmpfs[:SIZE], disk[:SIZE] or encrypted-disk[:SIZE] (default: containerd's
    /// rwlayer.img when the mounts have one, else the daemon's `upper` of `scratch_size`).
    #[arg(long, value_name = "KIND[:SIZE]", value_parser = parse_upper)]
    upper: Option<pb::UpperChoice>,
    /// Deliver the plan to the guest agent at vsock:CID:PORT, hvsock:PATH:PORT,
    /// serial:PATH (a QEMU virtio-serial chardev socket) or unix:PATH.
    #[arg(long, value_name = "ENDPOINT")]
    guest: Option<GuestEndpoint>,
    /// Print {"disks": [...], "plan": <MountRequest>, "guest": <MountResponse>} as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

fn parse_upper(s: &str) -> Result<pb::UpperChoice, String> {
    let (kind, size) = s.split_once(':').unwrap_or((s, ""));
    let mut u = pb::UpperSize::new();
    if !size.is_empty() {
        u.size_bytes = layerpass::daemon::config::parse_size(size)?;
    }
    let mut out = pb::UpperChoice::new();
    match kind {
        "tmpfs" => out.set_tmpfs(u),
        "disk" => out.set_disk(u),
        "encrypted-disk" => out.set_encrypted_disk(u),
        _ => {
            return Err(format!(
                "{s:?} is none of tmpfs[:SIZE], disk[:SIZE], encrypted-disk[:SIZE]"
            ));
        }
    }
    Ok(out)
}

impl ExportArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let mut req = pb::ExportRequest::new();
        req.sandbox_id = self.sandbox.clone();
        req.container_id = self.container.clone();
        if let Some(path) = &self.mounts {
            let bytes = if path.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                    .context("cannot read the mount list from stdin")?;
                b
            } else {
                std::fs::read(path)
                    .with_context(|| format!("cannot read the mount list {}", path.display()))?
            };
            let entries: Vec<MountEntry> = containerd::parse_json(&bytes)
                .with_context(|| format!("mount list {}", path.display()))?;
            let mut m = pb::ContainerdMounts::new();
            m.mounts = entries
                .into_iter()
                .map(|e| {
                    let mut c = pb::ContainerdMount::new();
                    c.type_ = e.kind;
                    c.source = e.source;
                    c.options = e.options;
                    c.target = e.target.unwrap_or_default();
                    c
                })
                .collect();
            req.set_mounts(m);
        }
        if let Some(image) = &self.image {
            let mut i = pb::OciImage::new();
            i.path = std::path::absolute(image)
                .with_context(|| format!("image {}", image.display()))?
                .display()
                .to_string();
            i.platform = self.platform.clone().unwrap_or_default();
            i.layer_format = EnumOrUnknown::new(match self.layer_format {
                None => pb::LayerFormat::LAYER_FORMAT_UNSPECIFIED,
                Some(LayerFormatArg::Full) => pb::LayerFormat::LAYER_FORMAT_FULL,
                Some(LayerFormatArg::Index) => pb::LayerFormat::LAYER_FORMAT_INDEX,
            });
            req.set_image(i);
        }
        req.mode = EnumOrUnknown::new(match self.mode {
            None => pb::ExportMode::EXPORT_MODE_UNSPECIFIED,
            Some(Mode::PerLayer) => pb::ExportMode::EXPORT_MODE_PER_LAYER,
            Some(Mode::Composite) => pb::ExportMode::EXPORT_MODE_COMPOSITE,
        });
        req.upper = self
            .upper
            .clone()
            .map_or_else(MessageField::none, MessageField::some);
        req.guest = self
            .guest
            .as_ref()
            .map(endpoint_to_pb)
            .map_or_else(MessageField::none, MessageField::some);
        let client = self.api.client()?;
        let resp = client.export(&req).map_err(|e| api_err(&e))?;
        if self.json {
            emit(&serde_json::to_string_pretty(&export_json(&resp)?)?)?;
        } else {
            for d in &resp.disks {
                let node = if d.device_node.is_empty() {
                    String::new()
                } else {
                    format!(" node={}", d.device_node)
                };
                emit(&format!(
                    "disk {} {} bytes {} socket={}{node}",
                    d.serial,
                    d.size_bytes,
                    if d.read_only { "ro" } else { "rw" },
                    d.socket
                ))?;
            }
            if let Some(g) = resp.guest.as_ref() {
                emit(&format!("guest mounted {} at {}", g.container_id, g.rootfs))?;
            }
        }
        Ok(Outcome::Success)
    }
}

fn message_json<M: layerpass_protocols::protobuf::MessageFull>(m: &M) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&layerpass_protocols::json::print(m)?)?)
}

fn disk_json(d: &pb::ExportedDisk) -> Value {
    json!({
        "socket": d.socket,
        "serial": d.serial,
        "size": d.size_bytes,
        "read_only": d.read_only,
        "device_node": (!d.device_node.is_empty()).then_some(&d.device_node),
    })
}

fn export_json(resp: &pb::ExportResponse) -> anyhow::Result<Value> {
    let mut out = json!({
        "disks": resp.disks.iter().map(disk_json).collect::<Vec<_>>(),
        // exactly what `layerpass plan` prints and `layerpass-guest mount --plan` reads
        "plan": match resp.plan.as_ref() {
            Some(p) => serde_json::from_str::<Value>(&layerpass_protocols::json::print_plan(p)?)?,
            None => Value::Null,
        },
    });
    if let Some(g) = resp.guest.as_ref() {
        out["guest"] = message_json(g)?;
    }
    Ok(out)
}

#[derive(Debug, Args)]
pub struct UnexportArgs {
    /// The sandbox id.
    #[arg(long, value_name = "ID")]
    sandbox: String,
    /// The container id.
    #[arg(long, value_name = "ID")]
    container: String,
    #[command(flatten)]
    api: ApiArgs,
}

impl UnexportArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let r = self
            .api
            .client()?
            .unexport(&self.sandbox, &self.container)
            .map_err(|e| api_err(&e))?;
        emit(&if r.existed {
            format!("unexported {}/{}", self.sandbox, self.container)
        } else {
            format!("{}/{} was not exported", self.sandbox, self.container)
        })?;
        if !r.guest_error.is_empty() {
            tracing::warn!("the guest did not unmount: {}", r.guest_error);
        }
        Ok(Outcome::Success)
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this sandbox.
    #[arg(long, value_name = "ID")]
    sandbox: Option<String>,
    /// JSON (the protobuf JSON mapping of HostListResponse).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

impl ListArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let r = self
            .api
            .client()?
            .list(self.sandbox.as_deref())
            .map_err(|e| api_err(&e))?;
        if self.json {
            emit(&layerpass_protocols::json::print(&r)?)?;
            return Ok(Outcome::Success);
        }
        for s in &r.sandboxes {
            emit(&format!("sandbox {}", s.sandbox_id))?;
            for e in &s.exports {
                emit(&format!(
                    "  container {}: {} disks, {}",
                    e.container_id,
                    e.disks.len(),
                    e.source
                ))?;
            }
        }
        Ok(Outcome::Success)
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON (the protobuf JSON mapping of HostStatusResponse).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

impl StatusArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let r = self.api.client()?.status().map_err(|e| api_err(&e))?;
        if self.json {
            emit(&layerpass_protocols::json::print(&r)?)?;
        } else {
            emit(&format!(
                "layerpass {}: {} exports in {} sandboxes, {} disks ({} connected, {} queues running, {} threads); {} resumed at start; up {} s\nstate {} (schema {}), upper {}, verity {}, kata store {}",
                r.version,
                r.exports,
                r.sandboxes,
                r.disks,
                r.connected_disks,
                r.running_queues,
                r.vhost_threads,
                r.resumed,
                r.uptime_seconds,
                r.state_dir,
                r.schema_version,
                r.upper,
                r.verity,
                if r.kata_store.is_empty() {
                    "off"
                } else {
                    &r.kata_store
                },
            ))?;
        }
        Ok(Outcome::Success)
    }
}

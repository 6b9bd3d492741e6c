//! `layerpass attest reference-values`: arguments and output of
//! [`layerpass::attest::reference::compute`], which does the work.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, ValueEnum};
use layerpass::attest::containerd::ContainerdPath;
use layerpass::attest::mkfs::MkfsErofs;
use layerpass::attest::reference::{Builder, BuilderReport, Input, compute};
use layerpass::attest::render;
use layerpass::image::Platform;
use layerpass_types::initdata::Initdata;

use super::super::{Outcome, emit};
use super::initdata::{Algorithm, describe};

/// Whose EROFS images the root hashes are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum As {
    /// layerpass's converter (`layerpass convert`, the daemon, `layerpass run`).
    Layerpass,
    /// layerpass's index layers (`convert --index`, `layer_format = "index"`,
    /// `layerpass run --index`).
    LayerpassIndex,
    /// containerd's EROFS differ configured as kata-deploy configures it.
    Containerd,
}

/// containerd's path that builds the layer (it decides the image UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PathKind {
    /// The EROFS differ unpacking a pulled layer: UUID from the compressed layer digest.
    Differ,
    /// The layer content cache / converter: UUID from the diff ID.
    Cache,
}

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The guest agent's reference-values TOML (`--reference-values`).
    Toml,
    /// Everything, as JSON.
    Json,
    /// A complete CoCo initdata document (the TOML under "layerpass.toml", the attestation
    /// agent's aa.toml with the event log on); its digest goes to stderr.
    Initdata,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["image", "layers"])))]
pub struct ReferenceValuesArgs {
    /// An OCI image layout directory, a `docker save` tar or an OCI layout tar.
    #[arg(long, value_name = "OCI_DIR|ARCHIVE")]
    image: Option<PathBuf>,
    /// Layer tars (plain, gzip or zstd), bottom first.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    layers: Vec<PathBuf>,
    /// Platform of the image, os/arch[/variant] (default linux/amd64).
    #[arg(long, value_name = "PLATFORM", requires = "image")]
    platform: Option<Platform>,
    /// Whose EROFS images: layerpass's, or containerd's EROFS differ (kata-deploy's
    /// mkfs_options "-T0 --mkfs-time --sort=none"; with containerd's default options the
    /// root hash cannot be predicted).
    #[arg(long = "as", value_enum, default_value = "layerpass")]
    builder: As,
    /// With --as containerd: the differ (UUID from the compressed layer digest) or the
    /// layer content cache (UUID from the diff ID) [default: differ].
    #[arg(long, value_enum)]
    containerd_path: Option<PathKind>,
    /// With --as containerd: the mkfs.erofs to run (erofs-utils >= 1.8, the node's
    /// version) [default: the project's scripts/erofs-utils-trixie when run from its
    /// source tree, else mkfs.erofs on PATH].
    #[arg(long, value_name = "PATH")]
    mkfs_erofs: Option<PathBuf>,
    /// With --as layerpass: the EROFS build time the layers were converted with.
    #[arg(long, value_name = "SECONDS")]
    mkfs_time: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "toml")]
    format: Format,
    /// With --format initdata: the document's digest algorithm (sha256 for a TPM).
    #[arg(long, value_enum)]
    algorithm: Option<Algorithm>,
    /// Write to FILE (replaced atomically) instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

impl ReferenceValuesArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let builder = self.builder()?;
        if self.algorithm.is_some() && self.format != Format::Initdata {
            bail!("--algorithm is for --format initdata");
        }
        let input = match &self.image {
            Some(path) => Input::Image {
                path: path.clone(),
                platform: self.platform.clone(),
            },
            None => Input::Layers(self.layers.clone()),
        };
        let on_layer = |i: usize, n: usize| eprintln!("layer {}/{n}", i + 1);
        let report = compute(&input, &builder, None, &on_layer)
            .context("cannot compute the reference values")?;
        match &report.builder {
            BuilderReport::Layerpass {
                version,
                mkfs_time,
                index,
            } => {
                let what = if *index { " index layers" } else { "" };
                eprintln!("as layerpass {version}{what} (EROFS build time {mkfs_time})");
            }
            BuilderReport::Containerd {
                mkfs_erofs,
                erofs_utils_version,
                containerd_path,
                note,
                ..
            } => {
                eprintln!(
                    "as containerd's EROFS {} path with erofs-utils {erofs_utils_version} \
                     ({mkfs_erofs})\nnote: {note}",
                    containerd_path.name()
                );
            }
        }
        let values = render::reference_values_toml(&report);
        let text = match self.format {
            Format::Toml => values,
            Format::Json => render::json(&report)?,
            Format::Initdata => {
                let algorithm = self.algorithm.unwrap_or(Algorithm::Sha256).into();
                let doc = render::initdata(&values, algorithm, true);
                let parsed = Initdata::parse(doc.as_bytes())
                    .context("the initdata document written does not parse")?;
                eprint!("{}", describe(&parsed));
                doc
            }
        };
        match &self.output {
            Some(path) => layerpass_fsutil::write_atomic(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => emit(&text)?,
        }
        Ok(Outcome::Success)
    }

    /// The builder the flags name; a flag of the other builder is an error.
    fn builder(&self) -> anyhow::Result<Builder> {
        match self.builder {
            As::Layerpass | As::LayerpassIndex => {
                if self.containerd_path.is_some() || self.mkfs_erofs.is_some() {
                    bail!("--containerd-path and --mkfs-erofs are for --as containerd");
                }
                let mkfs_time = self.mkfs_time.unwrap_or(0);
                Ok(if self.builder == As::LayerpassIndex {
                    Builder::LayerpassIndex { mkfs_time }
                } else {
                    Builder::Layerpass { mkfs_time }
                })
            }
            As::Containerd => {
                if self.mkfs_time.is_some() {
                    bail!(
                        "--mkfs-time is for --as layerpass (containerd's images are built \
                         with -T0 --mkfs-time)"
                    );
                }
                let mkfs = match &self.mkfs_erofs {
                    Some(p) => MkfsErofs::at(p)?,
                    None => MkfsErofs::default_tool()?,
                };
                let path = match self.containerd_path.unwrap_or(PathKind::Differ) {
                    PathKind::Differ => ContainerdPath::Differ,
                    PathKind::Cache => ContainerdPath::Cache,
                };
                Ok(Builder::Containerd { mkfs, path })
            }
        }
    }
}

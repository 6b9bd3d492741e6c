//! `layerpass verity format|verify`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use layerpass::verity::{
    FormatOptions, FormatReport, HashAlgorithm, HashTarget, HashType, Salt, VerifyOptions,
    VerityError, VerityParams, format_file, verify_file,
};
use uuid::Uuid;

use super::progress::bytes_bar;
use super::{Outcome, emit};

#[derive(Debug, Subcommand)]
pub enum VerityCommand {
    /// Build a hash tree for DATA, as `veritysetup format` does.
    ///
    /// Without --hash-file the tree is appended to DATA in containerd's layout (superblock at
    /// the end of the data, tree after it, `DATA.dmverity` sidecar) with containerd's salt of
    /// 32 zero bytes. With --hash-file the defaults are veritysetup's (random salt).
    Format(FormatArgs),
    /// Check DATA and its hash tree against ROOT_HASH, naming the first bad block.
    Verify(VerifyArgs),
}

impl VerityCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Format(a) => a.run(),
            Self::Verify(a) => a.run(),
        }
    }
}

/// Parameters shared by `format` and `verify`.
#[derive(Debug, Args)]
pub struct Geometry {
    /// Hash tree in this file instead of appended to DATA.
    #[arg(long, value_name = "FILE")]
    hash_file: Option<PathBuf>,
    /// Byte offset of the hash area (superblock, or tree with --no-superblock).
    #[arg(long, value_name = "BYTES")]
    hash_offset: Option<u64>,
    /// No 512-byte veritysetup superblock before the tree.
    #[arg(long)]
    no_superblock: bool,
    /// Hash algorithm: sha256, sha512 or sha1.
    #[arg(long = "hash", value_name = "ALG", default_value = "sha256")]
    algorithm: HashAlgorithm,
    /// dm-verity format (hash type): 1 (normal) or 0 (Chrome OS).
    #[arg(long, value_name = "0|1", default_value_t = 1)]
    format: u64,
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    data_block_size: u32,
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    hash_block_size: u32,
    /// Data blocks covered by the tree (default: all of DATA).
    #[arg(long, value_name = "N")]
    data_blocks: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl Geometry {
    fn params(&self, salt: Salt) -> Result<VerityParams, VerityError> {
        let params = VerityParams {
            algorithm: self.algorithm,
            hash_type: HashType::from_number(self.format)?,
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            salt,
        };
        params.validate()?;
        Ok(params)
    }
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// The data file (an EROFS image, or any file of whole data blocks).
    data: PathBuf,
    #[command(flatten)]
    geometry: Geometry,
    /// Salt in hex, or `-` for none. Default: 32 zero bytes when appending (containerd),
    /// 32 random bytes with --hash-file (veritysetup).
    #[arg(long, value_name = "HEX|-")]
    salt: Option<Salt>,
    /// Superblock UUID (default: random).
    #[arg(long, value_name = "UUID")]
    uuid: Option<Uuid>,
    /// Write the containerd sidecar DATA.dmverity (default when appending with a superblock).
    #[arg(long, overrides_with = "no_sidecar")]
    sidecar: bool,
    /// Do not write the sidecar.
    #[arg(long)]
    no_sidecar: bool,
    /// Zero-pad DATA to a whole number of data blocks first (appending only).
    #[arg(long)]
    pad: bool,
}

impl FormatArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let g = &self.geometry;
        let appending = g.hash_file.is_none();
        let salt = match self.salt.clone() {
            Some(s) => s,
            None if appending => Salt::zero32(),
            None => Salt::new(random_salt()?)?,
        };
        let superblock = !g.no_superblock;
        let opts = FormatOptions {
            params: g.params(salt)?,
            superblock,
            uuid: self.uuid,
            hash_offset: g.hash_offset,
            data_blocks: g.data_blocks,
            target: g
                .hash_file
                .clone()
                .map_or(HashTarget::Append, HashTarget::File),
            pad: self.pad,
            sidecar: self.sidecar || (appending && superblock && !self.no_sidecar),
        };
        let total = std::fs::metadata(&self.data).map_or(0, |m| m.len());
        let bar = bytes_bar(total, "hashing");
        let tick = |n: u64| bar.inc(n);
        let report = format_file(&self.data, &opts, Some(&tick))
            .with_context(|| format!("cannot format {}", self.data.display()))?;
        bar.finish_and_clear();
        if g.json {
            emit(&serde_json::to_string(&report)?)?;
        } else {
            emit(&format_text(&report))?;
        }
        Ok(Outcome::Success)
    }
}

fn random_salt() -> anyhow::Result<Vec<u8>> {
    let mut salt = vec![0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut salt).context("cannot read /dev/urandom")?;
    Ok(salt)
}

fn format_text(r: &FormatReport) -> String {
    let mut s = format!(
        "VERITY header information for {}\n\
         UUID:            \t{}\n\
         Hash type:       \t{}\n\
         Data blocks:     \t{}\n\
         Data block size: \t{}\n\
         Hash blocks:     \t{}\n\
         Hash block size: \t{}\n\
         Hash algorithm:  \t{}\n\
         Salt:            \t{}\n\
         Root hash:       \t{}\n\
         Hash file:       \t{}\n\
         Hash offset:     \t{}\n\
         Hash start block:\t{}",
        r.data_file.display(),
        r.uuid.as_deref().unwrap_or("(no superblock)"),
        r.format,
        r.data_blocks,
        r.data_block_size,
        r.tree_size / u64::from(r.hash_block_size),
        r.hash_block_size,
        r.hash_algorithm,
        r.salt,
        r.root_hash,
        r.hash_file.display(),
        r.hash_offset,
        r.hash_start_block,
    );
    if r.padded_bytes > 0 {
        s.push_str(&format!(
            "\nPadded:          \t{} zero bytes",
            r.padded_bytes
        ));
    }
    if let Some(p) = &r.sidecar {
        s.push_str(&format!("\nSidecar:         \t{}", p.display()));
    }
    s
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data file.
    data: PathBuf,
    /// The trusted root hash, hex.
    root_hash: String,
    #[command(flatten)]
    geometry: Geometry,
    /// Salt (hex or `-`) when there is no superblock. Default: 32 zero bytes.
    #[arg(long, value_name = "HEX|-")]
    salt: Option<Salt>,
}

impl VerifyArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let g = &self.geometry;
        let opts = VerifyOptions {
            params: g.params(self.salt.clone().unwrap_or_else(Salt::zero32))?,
            superblock: !g.no_superblock,
            hash_file: g.hash_file.clone(),
            hash_offset: g.hash_offset,
            data_blocks: g.data_blocks,
        };
        let total = std::fs::metadata(&self.data).map_or(0, |m| m.len());
        let bar = bytes_bar(total, "verifying");
        let tick = |n: u64| bar.inc(n);
        let result = verify_file(&self.data, &self.root_hash, &opts, Some(&tick));
        bar.finish_and_clear();
        match result {
            Ok(report) => {
                if g.json {
                    emit(&serde_json::to_string(&report)?)?;
                } else {
                    emit(&format!(
                        "{}: {} data blocks verified against root hash {}",
                        self.data.display(),
                        report.data_blocks,
                        report.root_hash
                    ))?;
                }
                Ok(Outcome::Success)
            }
            Err(VerityError::Mismatch(bad)) => {
                if g.json {
                    emit(
                        &serde_json::json!({"verified": false, "error": bad.to_string()})
                            .to_string(),
                    )?;
                }
                tracing::error!("{}: verification failed: {bad}", self.data.display());
                Ok(Outcome::CheckFailed)
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("cannot verify {}", self.data.display())))
            }
        }
    }
}

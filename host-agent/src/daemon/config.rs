//! The daemon's configuration file (TOML, default `/etc/layerpass/config.toml`). Every key
//! is optional; an unknown key is an error that names it. docs/daemon.md lists the keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::convert::LayerFormat;
use crate::vhost::config::MAX_QUEUES;
use crate::vhost::engine::{DEFAULT_POLL, default_workers};

/// Where `layerpass serve` reads its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/layerpass/config.toml";
/// Default `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/layerpass";
/// Default `run_dir`.
pub const DEFAULT_RUN_DIR: &str = "/run/layerpass";
/// Default `scratch_size`: containerd's `default_size` for block-mode snapshots.
pub const DEFAULT_SCRATCH_SIZE: u64 = 10 << 30;
/// Most queue worker threads (`workers`).
pub const MAX_WORKERS: usize = 256;
/// The file name of the API socket inside `run_dir` when `api_socket` is not set.
pub const API_SOCKET_NAME: &str = "api.sock";

/// How a container's layers reach the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportMode {
    /// One disk per layer.
    PerLayer,
    /// One GPT disk with a partition per layer.
    Composite,
}

/// The container's writable upper when the request names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpperKind {
    /// A tmpfs in the guest of `scratch_size` bytes.
    Tmpfs,
    /// A sparse ext4 scratch disk of `scratch_size` bytes in the state directory.
    Disk,
    /// A fresh sparse scratch disk the guest encrypts with a key it makes.
    EncryptedDisk,
}

impl UpperKind {
    /// The name used in the configuration and in `status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tmpfs => "tmpfs",
            Self::Disk => "disk",
            Self::EncryptedDisk => "encrypted-disk",
        }
    }
}

/// What the daemon does about each layer's dm-verity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerityMode {
    /// Every layer must have a `.dmverity` sidecar, and the sidecar must match the tree.
    RequireSidecar,
    /// Use the sidecar when there is one; otherwise build the tree into the daemon's cache.
    Compute,
    /// Serve layers without dm-verity (the guest mounts the raw disks; a guest that
    /// requires verity refuses them).
    Off,
}

impl VerityMode {
    /// The name used in the configuration and in `status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequireSidecar => "require-sidecar",
            Self::Compute => "compute",
            Self::Off => "off",
        }
    }
}

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    api_socket: Option<PathBuf>,
    export_mode: Option<ExportMode>,
    upper: Option<UpperKind>,
    scratch_size: Option<String>,
    verity: Option<VerityMode>,
    layer_format: Option<LayerFormat>,
    kata_vhost_user_store: Option<PathBuf>,
    queues: Option<usize>,
    poll_us: Option<u64>,
    workers: Option<usize>,
}

/// The daemon's settings, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The state database, the layer cache, computed trees and the daemon's scratch files.
    pub state_dir: PathBuf,
    /// Converted image layers (`layers/`) and computed dm-verity trees (`trees/`); the
    /// state directory unless set. Several daemons (and `layerpass run`s) may share it.
    pub cache_dir: PathBuf,
    /// Sockets (the API socket and the disks' sockets when the Kata store is off).
    pub run_dir: PathBuf,
    /// The host API's unix socket.
    pub api_socket: PathBuf,
    /// The default export mode.
    pub export_mode: ExportMode,
    /// The default upper.
    pub upper: UpperKind,
    /// Size of a scratch disk or tmpfs the daemon makes, in bytes.
    pub scratch_size: u64,
    /// dm-verity handling.
    pub verity: VerityMode,
    /// What an image's layers become in the cache: full EROFS images (the default) or
    /// index layers over their tars (`layer_format = "index"`, see docs/tar-index.md).
    pub layer_format: LayerFormat,
    /// Kata's vhost-user store directory (`vhost_user_store_path`); `None`: off.
    pub kata_vhost_user_store: Option<PathBuf>,
    /// Queues each disk offers.
    pub queues: usize,
    /// Busy-poll of a queue after its last request.
    pub poll: Duration,
    /// Queue worker threads serving every disk.
    pub workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        let run_dir = PathBuf::from(DEFAULT_RUN_DIR);
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            cache_dir: PathBuf::from(DEFAULT_STATE_DIR),
            api_socket: run_dir.join(API_SOCKET_NAME),
            run_dir,
            export_mode: ExportMode::PerLayer,
            upper: UpperKind::Tmpfs,
            scratch_size: DEFAULT_SCRATCH_SIZE,
            verity: VerityMode::RequireSidecar,
            layer_format: LayerFormat::Full,
            kata_vhost_user_store: None,
            queues: MAX_QUEUES,
            poll: DEFAULT_POLL,
            workers: default_workers(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (the message names the key).
    #[error("configuration {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, naming the key.
        message: String,
    },
    /// A key whose value is not acceptable.
    #[error("configuration {}: `{key}` {reason}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Reads `path`. A missing file at the default path means the defaults; a missing file
    /// named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: match e.span() {
                Some(span) => {
                    let line_no = text[..span.start].matches('\n').count() + 1;
                    let line = text.lines().nth(line_no - 1).unwrap_or_default().trim();
                    format!("line {line_no} `{line}`: {}", e.message())
                }
                None => e.message().to_owned(),
            },
        })?;
        let bad = |key, reason: String| ConfigError::Value {
            path: path.to_owned(),
            key,
            reason,
        };
        let d = Self::default();
        let absolute = |key, p: Option<PathBuf>, default: PathBuf| match p {
            Some(p) if !p.is_absolute() => {
                Err(bad(key, format!("{} is not absolute", p.display())))
            }
            Some(p) => Ok(p),
            None => Ok(default),
        };
        let state_dir = absolute("state_dir", raw.state_dir, d.state_dir)?;
        let cache_dir = absolute("cache_dir", raw.cache_dir, state_dir.clone())?;
        let run_dir = absolute("run_dir", raw.run_dir, d.run_dir)?;
        let api_socket = absolute("api_socket", raw.api_socket, run_dir.join(API_SOCKET_NAME))?;
        let kata_vhost_user_store = match raw.kata_vhost_user_store {
            Some(p) if !p.is_absolute() => {
                return Err(bad(
                    "kata_vhost_user_store",
                    format!("{} is not absolute", p.display()),
                ));
            }
            other => other,
        };
        let scratch_size = match raw.scratch_size {
            None => d.scratch_size,
            Some(s) => parse_size(&s).map_err(|reason| bad("scratch_size", reason))?,
        };
        if scratch_size < crate::export::scratch::MIN_SCRATCH {
            return Err(bad(
                "scratch_size",
                format!(
                    "{scratch_size} bytes is below the smallest scratch disk ({} bytes)",
                    crate::export::scratch::MIN_SCRATCH
                ),
            ));
        }
        let queues = raw.queues.unwrap_or(d.queues);
        if !(1..=MAX_QUEUES).contains(&queues) {
            return Err(bad(
                "queues",
                format!("{queues} is not from 1 to {MAX_QUEUES}"),
            ));
        }
        let poll_us = raw.poll_us.unwrap_or(d.poll.as_micros() as u64);
        if poll_us > 1_000_000 {
            return Err(bad(
                "poll_us",
                format!("{poll_us} is above 1000000 (one second)"),
            ));
        }
        let workers = match raw.workers {
            None | Some(0) => d.workers,
            Some(n) if n <= MAX_WORKERS => n,
            Some(n) => {
                return Err(bad("workers", format!("{n} is above {MAX_WORKERS}")));
            }
        };
        Ok(Self {
            state_dir,
            cache_dir,
            run_dir,
            api_socket,
            export_mode: raw.export_mode.unwrap_or(d.export_mode),
            upper: raw.upper.unwrap_or(d.upper),
            scratch_size,
            verity: raw.verity.unwrap_or(d.verity),
            layer_format: raw.layer_format.unwrap_or(d.layer_format),
            kata_vhost_user_store,
            queues,
            poll: Duration::from_micros(poll_us),
            workers,
        })
    }
}

/// Bytes, or a number with a K, M, G or T suffix (powers of 1024; a trailing `B` or `iB`
/// is accepted: `10G`, `10GiB`, `512M`). The one size parser of the daemon and the CLI.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "unknown size suffix {c:?} in {s:?} (use K, M, G or T)"
                    ));
                }
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M, G or T)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// [`parse_bytes`], and a positive multiple of 4096 (a disk or tmpfs size).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if bytes == 0 || !bytes.is_multiple_of(4096) {
        return Err(format!("{s:?} is not a positive multiple of 4096 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/layerpass/config.toml"))
    }

    #[test]
    fn empty_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.api_socket, Path::new("/run/layerpass/api.sock"));
        assert_eq!(c.verity, VerityMode::RequireSidecar);
    }

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let text = include_str!("../../../kata-config/config.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
state_dir = "/srv/lp/state"
run_dir = "/srv/lp/run"
export_mode = "composite"
upper = "encrypted-disk"
scratch_size = "20GiB"
verity = "compute"
layer_format = "index"
kata_vhost_user_store = "/run/kata-containers/vhost-user"
queues = 2
poll_us = 0
"#,
        )
        .unwrap();
        assert_eq!(c.api_socket, Path::new("/srv/lp/run/api.sock"));
        assert_eq!(c.export_mode, ExportMode::Composite);
        assert_eq!(c.upper, UpperKind::EncryptedDisk);
        assert_eq!(c.scratch_size, 20 << 30);
        assert_eq!(c.verity, VerityMode::Compute);
        assert_eq!(c.layer_format, LayerFormat::Index);
        assert_eq!(c.queues, 2);
        assert_eq!(c.poll, Duration::ZERO);
        let c = parse("api_socket = \"/x/api.sock\"\nrun_dir = \"/y\"").unwrap();
        assert_eq!(c.api_socket, Path::new("/x/api.sock"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("state_dri = \"/x\"").unwrap_err().to_string();
        assert!(e.contains("state_dri"), "{e}");
        let e = parse("upper = \"nfs\"").unwrap_err().to_string();
        assert!(e.contains("nfs") && e.contains("encrypted-disk"), "{e}");
        let e = parse("verity = \"auto\"").unwrap_err().to_string();
        assert!(e.contains("auto"), "{e}");
        let e = parse("layer_format = \"tarfs\"").unwrap_err().to_string();
        assert!(e.contains("tarfs") && e.contains("index"), "{e}");
        let e = parse("queues = 0").unwrap_err().to_string();
        assert!(e.contains("`queues`"), "{e}");
        let e = parse("scratch_size = \"1M\"").unwrap_err().to_string();
        assert!(e.contains("`scratch_size`"), "{e}");
        let e = parse("scratch_size = \"ten\"").unwrap_err().to_string();
        assert!(e.contains("`scratch_size`"), "{e}");
        let e = parse("state_dir = \"relative\"").unwrap_err().to_string();
        assert!(
            e.contains("`state_dir`") && e.contains("not absolute"),
            "{e}"
        );
        let e = parse("queues = \"two\"").unwrap_err().to_string();
        assert!(e.contains("queues"), "{e}");
        let e = parse("[daemon]\nx = 1").unwrap_err().to_string();
        assert!(e.contains("daemon"), "{e}");
    }

    #[test]
    fn a_missing_default_file_is_the_defaults_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.toml");
        assert_eq!(Config::load(&p, false).unwrap(), Config::default());
        assert!(matches!(
            Config::load(&p, true),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        for bad in ["", "1X", "4097", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}

//! `layerpass blk serve`: a disk on one or more vhost-user-blk sockets, served by one engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use layerpass::export::Disk;
use layerpass::export::composite::CompositeDisk;
use layerpass::export::scratch::ScratchDisk;
use layerpass::export::spec::LayerFileSpec;
use layerpass::vhost::config::MAX_QUEUES;
use layerpass::vhost::engine::{DEFAULT_POLL, Engine, EngineConfig, default_workers};

use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum BlkCommand {
    /// Serve a disk until SIGINT or SIGTERM; a VMM may disconnect and reconnect.
    Serve(ServeArgs),
}

impl BlkCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Serve(a) => a.run(),
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("disk").required(true).args(["layer", "composite", "scratch"])))]
pub struct ServeArgs {
    /// Unix socket to listen on (the VMM's `-chardev socket,path=`). Given several times,
    /// every socket serves its own instance of the disk (the same files; a scratch disk only
    /// on one socket), all from the same threads.
    #[arg(long, value_name = "PATH", required = true)]
    socket: Vec<PathBuf>,
    /// A read-only layer disk: the blob, then (if given) a separate hash tree file; or an
    /// index layer META+TAR[#OFFSET] (EROFS index metadata, the tar it points into from byte
    /// OFFSET, then its tree, META.tree by default), served with 512-byte logical blocks.
    #[arg(long, value_name = "FILE[:TREE]|META+TAR[#OFFSET][:TREE]")]
    layer: Option<String>,
    /// A read-only composite GPT disk, one partition per layer, top layer first. A layer's
    /// diff ID (`@DIGEST`, or the file name if it is 64 hex digits) names its partition;
    /// without one, the root hash in the blob's `.dmverity` sidecar does. Index layers
    /// (META+TAR[#OFFSET]) are accepted; with one, the disk has 512-byte logical blocks.
    #[arg(long, value_name = "FILE[:TREE][@DIGEST]|META+TAR[#OFFSET][:TREE][@DIGEST]", num_args = 1..)]
    composite: Vec<String>,
    /// A writable scratch disk, created sparse and ext4-formatted if missing.
    #[arg(long, value_name = "FILE", requires = "size")]
    scratch: Option<PathBuf>,
    /// Size of a new scratch disk: bytes, or with a K, M, G or T suffix.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// virtio-blk serial (GET_ID), at most 20 bytes; default: the file name.
    #[arg(long, value_name = "S")]
    serial: Option<String>,
    /// Queues offered (at least the guest's vCPU count for QEMU's default num-queues).
    #[arg(long, default_value_t = MAX_QUEUES, value_parser = parse_queues)]
    queues: usize,
    /// Microseconds a queue worker keeps polling a queue after its last request (0: off).
    #[arg(long, value_name = "US", default_value_t = DEFAULT_POLL.as_micros() as u64)]
    poll_us: u64,
    /// Queue worker threads for all sockets (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
}

impl ServeArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        if self.scratch.is_some() && self.socket.len() > 1 {
            anyhow::bail!("a scratch disk is writable: serve it on one socket only");
        }
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .context("cannot install signal handlers")?;
        let fds = super::raise_fd_limit();
        let engine = Engine::start(EngineConfig {
            workers: self.workers.map_or_else(default_workers, usize::from),
            poll: Duration::from_micros(self.poll_us),
        })
        .context("cannot start the vhost engine")?;
        let mut exports = Vec::with_capacity(self.socket.len());
        for socket in &self.socket {
            let disk = self.open()?;
            let export = engine
                .serve(socket, disk.clone(), self.queues)
                .with_context(|| format!("cannot serve on {}", socket.display()))?;
            tracing::info!(
                socket = %socket.display(),
                size = disk.size(),
                logical_block_size = disk.logical_block_size(),
                read_only = disk.read_only(),
                serial = %String::from_utf8_lossy(disk.serial()),
                queues = self.queues,
                "serving"
            );
            exports.push(export);
        }
        tracing::info!(
            sockets = exports.len(),
            threads = engine.threads(),
            open_files_limit = fds,
            "ready"
        );
        if signals.forever().next().is_some() {
            tracing::info!("signal received, stopping");
        }
        drop(exports);
        drop(engine);
        Ok(Outcome::Success)
    }

    fn open(&self) -> anyhow::Result<Arc<dyn Disk>> {
        if let Some(spec) = &self.layer {
            let d = LayerFileSpec::parse(spec)?.layer_disk(self.serial.as_deref())?;
            return Ok(Arc::new(d));
        }
        if let Some(path) = &self.scratch {
            return Ok(Arc::new(ScratchDisk::open_or_create(
                path,
                self.size,
                self.serial.as_deref(),
            )?));
        }
        let layers = self
            .composite
            .iter()
            .map(|s| LayerFileSpec::parse(s).and_then(|l| l.composite_layer()))
            .collect::<Result<Vec<_>, _>>()?;
        let serial = self
            .serial
            .clone()
            .unwrap_or_else(|| layerpass_types::naming::DEFAULT_COMPOSITE_SERIAL.to_owned());
        let d = CompositeDisk::build(
            &layers,
            u64::from(layerpass_types::envelope::DEFAULT_LOGICAL_BLOCK_SIZE),
            &serial,
        )?;
        for l in d.layers() {
            tracing::info!(partition = l.number, name = %l.name, guid = %l.unique_guid, offset = l.offset, size = l.size, "layer");
        }
        Ok(Arc::new(d))
    }
}

fn parse_queues(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_QUEUES).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a queue count from 1 to {MAX_QUEUES}")),
    }
}

/// Bytes, or a number with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    layerpass::daemon::config::parse_bytes(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}

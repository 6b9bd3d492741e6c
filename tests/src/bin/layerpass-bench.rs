//! `layerpass-bench`: benchmarks against named peers, measured in the same run.
//!
//! `cargo run --release -p layerpass-tests --bin layerpass-bench -- verity`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use layerpass_tests::bench;

#[derive(Debug, Parser)]
#[command(name = "layerpass-bench", about)]
struct Args {
    /// Directory for the benchmark files (default: a fresh temporary directory under
    /// /var/tmp, removed afterwards).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A ~1 GiB real layer to EROFS + dm-verity: layerpass against containerd's EROFS differ
    /// (mkfs.erofs 1.8.6 --tar=f, then veritysetup) and against tar -x + sync.
    Convert {
        /// The layer tar (default: built once in DIR/convert-corpus from Debian packages).
        #[arg(long)]
        tar: Option<PathBuf>,
        /// Runs of each contender.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Convert the layer compressed with `gzip -1` (made once next to the tar): each
        /// contender decompresses it (`tar -z`, `mkfs.erofs --ungzip`).
        #[arg(long)]
        gzip: bool,
        /// Time to a servable verified layer, page cache hot and cold (root): `convert
        /// layer --index` against the full conversion, containerd's `mkfs.erofs --tar=f`
        /// with veritysetup, and its tar-index pipeline (`--tar=i`, append, veritysetup
        /// 512/512), with bytes written.
        #[arg(long)]
        index: bool,
    },
    /// 4 KiB random and 1 MiB sequential reads over vhost-user-blk: layerpass against
    /// qemu-storage-daemon (iothread, io_uring), both separate processes driven by
    /// libblkio: IOPS, server CPU per I/O, latency percentiles. Or `--disks N`: one
    /// layerpass process serving N disks.
    Blk(bench::blk::BlkArgs),
    /// Rootfs ready in a QEMU guest: `layerpass-guest mount --plan` over layers exported by
    /// `layerpass blk serve`, against unpacking the same tars in the guest (busybox
    /// `tar -x` onto ext4, then overlay), in one boot per image set; with the agent's
    /// per-phase breakdown.
    Run(bench::run::RunArgs),
    /// Host memory for 4 VMs reading every file of the same ~500 MB image: one
    /// `layerpass serve` exporting it to each, against each VM given its own copy of the
    /// unpacked rootfs as an ext4 disk image (page cache of the served files by
    /// mincore, the daemon's RSS, QEMU's).
    Memory(bench::memory::MemoryArgs),
    /// dm-verity tree of a 1 GiB file: layerpass against `veritysetup format`.
    Verity {
        /// File size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Runs of each tool (alternating).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layerpass-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let tmp;
    let dir = match args.dir {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("layerpass-bench-")
                .tempdir_in("/var/tmp")?;
            tmp.path().to_owned()
        }
    };
    match args.command {
        Cmd::Blk(a) => bench::blk::run_bench(&dir, &a),
        Cmd::Run(a) => bench::run::run_bench(&dir, &a),
        Cmd::Memory(a) => bench::memory::run_bench(&dir, &a),
        Cmd::Convert {
            tar,
            runs,
            gzip,
            index: true,
        } => bench::convert_index::run_bench(&dir, tar, runs, gzip),
        Cmd::Convert {
            tar, runs, gzip, ..
        } => bench::convert::run_bench(&dir, tar, runs, gzip),
        Cmd::Verity { size_mib, runs } => bench::verity::run_bench(&dir, size_mib << 20, runs),
    }
}

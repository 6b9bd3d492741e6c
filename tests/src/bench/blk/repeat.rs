//! `layerpass-bench blk --repeat N`: many short connections to each server, 4 KiB random
//! reads at QD32 on each (the workload an intermittent `read failed: -5` was seen in),
//! counting failed reads and connections instead of stopping at the first. Run it with the
//! backend's warnings on (the default log filter is `warn`) to see why a read failed.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::ensure;

use super::workload::timed_reads;
use super::{BlkArgs, LAYERPASS, QSD, start_pair};
use crate::blk_client::BlkClient;

const DEPTH: usize = 32;
const LEN: usize = 4096;

pub fn run(
    dir: &Path,
    layerpass: &Path,
    qsd: &Path,
    image: &Path,
    n: usize,
    args: &BlkArgs,
) -> anyhow::Result<()> {
    ensure!(args.repeat_secs > 0.0, "--repeat-secs must be positive");
    let time = Duration::from_secs_f64(args.repeat_secs);
    let mut servers = start_pair(layerpass, qsd, image, dir, args)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "repeat: {n} connections per server (alternating), 4 KiB random reads at QD{DEPTH} for {} s each, {} MiB file\n\
         layerpass: {}\n\
         qemu-storage-daemon: {}",
        args.repeat_secs,
        args.size_mib,
        servers[LAYERPASS].command(),
        servers[QSD].command()
    )?;
    // Per server: failed connections, reads completed.
    let mut failed = [0usize; 2];
    let mut reads = [0u64; 2];
    for i in 0..n {
        let order = if i % 2 == 0 {
            [QSD, LAYERPASS]
        } else {
            [LAYERPASS, QSD]
        };
        for s in order {
            let server = &mut servers[s];
            server.check_alive()?;
            let socket = server.sockets()[0].clone();
            // A different offset sequence per connection.
            let result = BlkClient::connect(&socket, true, DEPTH * LEN)
                .and_then(|mut c| timed_reads(&mut c, DEPTH, LEN, true, i as u64 + 1, time, None));
            match result {
                Ok((done, _)) => reads[s] += done,
                Err(e) => {
                    failed[s] += 1;
                    writeln!(out, "connection {i} to {}: {e:#}", server.name())?;
                }
            }
        }
    }
    for (s, name) in [(LAYERPASS, "layerpass"), (QSD, "qemu-storage-daemon")] {
        writeln!(
            out,
            "{name}: {} failed connections of {n}, {} reads completed",
            failed[s], reads[s]
        )?;
    }
    Ok(())
}

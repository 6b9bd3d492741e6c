//! One pass over a queue: every available chain is split, executed and returned to the used
//! ring, in order. Shared by the backend's workers and the fuzz harness.

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::request::{Chain, GuestMem, execute};
use crate::export::Disk;
use crate::warn_limited;

/// Serves every chain the driver has made available. Returns how many were completed.
pub fn serve_available(
    queue: &mut Queue,
    mem: &GuestMem,
    disk: &dyn Disk,
) -> Result<usize, virtio_queue::Error> {
    serve_some(queue, mem, disk, usize::MAX)
}

/// Serves at most `max` of the chains the driver has made available, in order. Returns how
/// many were completed.
pub fn serve_some(
    queue: &mut Queue,
    mem: &GuestMem,
    disk: &dyn Disk,
    max: usize,
) -> Result<usize, virtio_queue::Error> {
    let chains: Vec<_> = queue.iter(mem)?.take(max).collect();
    let mut done = 0;
    for chain in chains {
        let head = chain.head_index();
        let used = match Chain::split(chain) {
            Ok(c) => execute(mem, &c, disk),
            Err(m) => {
                warn_limited!(error = %m, "malformed virtio-blk chain");
                0
            }
        };
        queue.add_used(mem, head, used)?;
        done += 1;
    }
    Ok(done)
}

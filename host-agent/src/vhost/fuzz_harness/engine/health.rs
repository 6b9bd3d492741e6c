//! After a run: the engine still serves (a fresh frontend per disk reads on every queue),
//! and what the process holds is what it held before.

use vm_memory::{Bytes, GuestAddress};

use super::super::HarnessError;
use super::chains::{data_at, status_at};
use super::guest::Guest;
use super::program::Request;
use super::{Checks, EngineViolation, Running, procfs, world};

/// The prefix of the engine's thread names.
const ENGINE_THREADS: &str = "vhost-";

/// A fresh frontend on every disk reads 4 KiB at sector 0 on every queue.
pub fn health(r: &Running, connects: &mut [u64]) -> Result<(), HarnessError> {
    let read = Request {
        kind: 0,
        sector: 0,
        len: 8,
    };
    for (d, s) in r.served.iter().enumerate() {
        let mut g = Guest::connect(s.export.socket(), s.info)?;
        connects[d] += 1;
        world::bring_up(&mut g, false)?;
        for q in 0..s.info.queues {
            if !g.submit(q, &[read], 0)?.required {
                return Err(EngineViolation::NotServing { disk: d, queue: q }.into());
            }
            let status: u8 = g
                .ram
                .read_obj(GuestAddress(status_at(q, 0)))
                .unwrap_or(0xff);
            if status != 0 {
                return Err(EngineViolation::HealthStatus {
                    disk: d,
                    queue: q,
                    status,
                }
                .into());
            }
            let mut got = vec![0u8; 4096];
            g.ram
                .read_slice(&mut got, GuestAddress(data_at(q, 0)))
                .map_err(|e| HarnessError::Memory(e.to_string()))?;
            if let Some(want) = s.disk.expected(0, got.len())
                && let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b)
            {
                return Err(EngineViolation::HealthData {
                    disk: d,
                    queue: q,
                    first_difference: at,
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Threads and open files.
#[derive(Debug, PartialEq, Eq)]
pub struct Census {
    engine_threads: usize,
    /// With [`Checks::Process`].
    process: Option<(usize, usize)>,
}

impl Census {
    pub fn take(checks: Checks) -> Result<Self, HarnessError> {
        let engine_threads = procfs::threads_named(ENGINE_THREADS).map_err(HarnessError::Files)?;
        let process = match checks {
            Checks::Process => Some((
                procfs::threads().map_err(HarnessError::Files)?,
                procfs::fds().map_err(HarnessError::Files)?,
            )),
            Checks::Engine => None,
        };
        Ok(Self {
            engine_threads,
            process,
        })
    }
}

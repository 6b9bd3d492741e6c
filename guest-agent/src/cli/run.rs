//! `run`: the one-shot container of `layerpass run`. Started only by the measured
//! initramfs's `/init`; the ttrpc service has no exec call (a host could use one to read
//! a confidential container's upper), so this is the only way a command runs.
//!
//! 1. open the status, stdout and stderr ports ([`ports`]); `ready`;
//! 2. read the plan (and the policy flags), read `process.json`;
//! 3. mount with the agent; `mounted`, then one `eventlog` line per event-log line the
//!    mount appended;
//! 4. run the process ([`crate::process::run_in_rootfs`]); `exited`;
//! 5. unmount (also after a failure once mounted).
//!
//! A failed stage writes `failed` and the command exits with the kind's status; the
//! process's own status travels in `exited` (the command then exits 0).

mod ports;
mod status;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use layerpass_protocols::json;
use layerpass_protocols::status::Kind;
use tracing::{info, warn};

use self::status::StatusPort;
pub use self::status::{Stage, StatusEvent};
use super::Failure;
use super::args::RunArgs;
use super::oneshot::read_plan;
use crate::plan::MountResult;
use crate::process::{self, ProcessSpec};
use crate::server::convert;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The guest's uptime from `/proc/uptime`, in ms (0 when unreadable).
fn uptime_ms() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    text.split_whitespace()
        .next()
        .and_then(|secs| secs.parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .map_or(0, millis)
}

/// Reads and validates `process.json`.
pub fn read_process(path: &Path) -> Result<ProcessSpec, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Kind::of_io(&e),
            format!("cannot read process {}: {e}", path.display()),
        )
    })?;
    ProcessSpec::parse(&text).map_err(|e| {
        Failure::new(
            Kind::InvalidArgument,
            format!("process {}: {e}", path.display()),
        )
    })
}

/// The event log's size before the mount: where this run's lines start.
fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The event log's lines from byte `from` on.
fn log_lines(path: &Path, from: u64) -> std::io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// `run`.
pub fn run(args: &RunArgs) -> Result<(), Failure> {
    let timeout = args.port_timeout()?;
    let mut status = StatusPort::new(ports::open_port(&args.status_port, timeout)?);
    let stdout =
        ports::open_port(&args.stdout_port, timeout).map_err(|f| status.fail(Stage::Ports, f))?;
    let stderr =
        ports::open_port(&args.stderr_port, timeout).map_err(|f| status.fail(Stage::Ports, f))?;
    status
        .try_send(&StatusEvent::Ready {
            uptime_ms: uptime_ms(),
        })
        .map_err(|e| {
            Failure::new(
                Kind::Unavailable,
                format!("cannot write to the status port: {e}"),
            )
        })?;

    let (config, backend, plan) = (|| {
        let config = args.policy.config()?;
        let backend = args.policy.backend()?;
        let request = read_plan(&args.plan)?;
        let plan = convert::mount_plan(&request)?;
        Ok((config, backend, plan))
    })()
    .map_err(|f| status.fail(Stage::Plan, f))?;
    let spec = read_process(&args.process).map_err(|f| status.fail(Stage::Process, f))?;

    let event_log = config.event_log.clone();
    let log_start = log_len(&event_log);
    let start = Instant::now();
    let (agent, result) = (|| {
        let agent = args.policy.agent_with(config, &backend)?;
        let result = agent.mount(&plan)?;
        Ok::<_, Failure>((agent, result))
    })()
    .map_err(|f| status.fail(Stage::Mount, f))?;
    let mount_ms = millis(start.elapsed());
    info!(container = %result.container_id, rootfs = %result.rootfs.display(), mount_ms, "mounted");

    let ran = mounted(
        &mut status,
        &result,
        mount_ms,
        (&event_log, log_start),
        &spec,
        (&stdout, &stderr),
    );
    let unmounted = agent.unmount(&result.container_id).map_err(Failure::from);
    if let Err(f) = &unmounted {
        warn!(container = %result.container_id, error = %f.message, "unmount failed");
    }
    ran.and(unmounted)
}

/// Everything between mount and unmount: `mounted`, the event-log lines, the process.
fn mounted(
    status: &mut StatusPort<File>,
    result: &MountResult,
    mount_ms: u64,
    (event_log, log_start): (&Path, u64),
    spec: &ProcessSpec,
    (stdout, stderr): (&File, &File),
) -> Result<(), Failure> {
    let response = json::print(&convert::mount_response(result))
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .map_err(|e| {
            let f = Failure::new(Kind::Internal, format!("encoding the MountResponse: {e}"));
            status.fail(Stage::Mount, f)
        })?;
    status.send(&StatusEvent::Mounted { mount_ms, response });
    match log_lines(event_log, log_start) {
        Ok(lines) => {
            for line in &lines {
                status.send(&StatusEvent::EventLog { line: line.clone() });
            }
        }
        Err(e) => warn!(log = %event_log.display(), error = %e, "cannot read the event log"),
    }
    let exit = process::run_in_rootfs(&result.rootfs, spec, stdout, stderr)
        .map_err(|e| status.fail(Stage::Process, e.into()))?;
    info!(code = exit.code, run_ms = millis(exit.run), "exited");
    status.send(&StatusEvent::Exited {
        code: exit.code,
        run_ms: millis(exit.run),
    });
    Ok(())
}

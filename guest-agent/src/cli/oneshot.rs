//! One-shot commands: `mount --plan`, `unmount`, `list`. Each runs an agent on the real
//! kernel over the run directory (where a serving agent or an earlier one-shot command
//! left its state), does one thing and exits.

use std::io::{Read, Write};

use layerpass_protocols::json;
use layerpass_protocols::status::Kind;
use layerpass_protocols::v1::guest::MountRequest;

use super::Failure;
use super::args::{ListArgs, MountArgs, UnmountArgs};
use crate::agent::Agent;
use crate::server::convert;

/// Reads and parses a plan file (`-` is stdin) into a request.
pub fn read_plan(path: &std::path::Path) -> Result<MountRequest, Failure> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            Failure::new(
                Kind::InvalidArgument,
                format!("cannot read the plan from stdin: {e}"),
            )
        })?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                Kind::NotFound
            } else {
                Kind::InvalidArgument
            };
            Failure::new(kind, format!("cannot read plan {}: {e}", path.display()))
        })?
    };
    json::parse_mount_request(&text).map_err(|e| {
        Failure::new(
            Kind::InvalidArgument,
            format!("plan {}: {e}", path.display()),
        )
    })
}

fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(Kind::Internal, format!("cannot write to stdout: {e}")))
}

fn json_failure(e: &json::JsonError) -> Failure {
    Failure::new(Kind::Internal, e.to_string())
}

/// `mount --plan PLAN.json`: prints the rootfs (or the MountResponse with `--json`).
pub fn mount(args: &MountArgs) -> Result<(), Failure> {
    let config = args.policy.config()?;
    let backend = args.policy.backend()?;
    let request = read_plan(&args.plan)?;
    let plan = convert::mount_plan(&request)?;
    let agent = args.policy.agent_with(config, &backend)?;
    let result = agent.mount(&plan)?;
    if args.json {
        let text = json::print(&convert::mount_response(&result)).map_err(|e| json_failure(&e))?;
        print(&text)
    } else {
        print(&result.rootfs.display().to_string())
    }
}

/// `unmount ID`.
pub fn unmount(args: &UnmountArgs) -> Result<(), Failure> {
    let agent = args.policy.measured_agent()?;
    agent.unmount(&args.id)?;
    Ok(())
}

/// `list`: one `ID ROOTFS` line per container, or a ListResponse with `--json`.
pub fn list(args: &ListArgs) -> Result<(), Failure> {
    let agent = Agent::new(args.policy.config()?)?;
    let containers = agent.list();
    if args.json {
        let text =
            json::print(&convert::list_response(&containers)).map_err(|e| json_failure(&e))?;
        return print(&text);
    }
    for c in &containers {
        print(&format!("{} {}", c.container_id, c.rootfs.display()))?;
    }
    Ok(())
}

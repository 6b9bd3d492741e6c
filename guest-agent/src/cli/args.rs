//! Command-line arguments and their translation to the agent's configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use layerpass_protocols::status::Kind;
use layerpass_types::initdata;

use super::Failure;
use crate::agent::{Agent, AgentConfig, DEFAULT_RUN_DIR};
use crate::error::Chain;
use crate::measure::aa_client::DEFAULT_SOCKET;
use crate::measure::mode::FsProbe;
use crate::measure::tpm::device::DEFAULT_DEVICE;
use crate::measure::{Backend, MeasureMode, MeasureOptions, Measurer, ModeError};
use crate::policy::{ReferenceValues, initdata as policy_initdata};
use crate::server::{DEFAULT_VSOCK_PORT, Transport};

/// layerpass guest agent: verified EROFS layers stacked with overlayfs.
#[derive(Debug, Parser)]
#[command(name = "layerpass-guest", version)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace; LAYERPASS_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GuestAgent ttrpc service until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Mount one container's rootfs from a JSON plan (the JSON mapping of MountRequest)
    /// and print the rootfs path.
    Mount(MountArgs),
    /// Unmount a container's rootfs (succeeds if it is not mounted).
    Unmount(UnmountArgs),
    /// List the mounted containers.
    List(ListArgs),
    /// Mount a rootfs from a plan, run one process in it with its output on
    /// virtio-serial ports, report on a status port, unmount (for the measured initramfs
    /// of `layerpass run`).
    Run(RunArgs),
}

/// The policy and where the agent keeps its state; shared by every command.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Refuse layers without dm-verity parameters.
    #[arg(long)]
    pub require_verity: bool,
    /// TOML file of trusted root hashes; any other root hash is refused.
    #[arg(long, value_name = "FILE")]
    pub reference_values: Option<PathBuf>,
    /// Take the trusted root hashes from the "layerpass.toml" entry of a CoCo initdata
    /// document instead [FILE default: /run/confidential-containers/initdata/initdata.toml,
    /// where Kata writes it]. Not with --reference-values.
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        default_missing_value = initdata::KATA_PATH,
        conflicts_with = "reference_values"
    )]
    pub initdata: Option<PathBuf>,
    /// Confidential mode: --require-verity, and --reference-values or --initdata is
    /// required.
    #[arg(long)]
    pub confidential: bool,
    /// Where containers, layer mounts, state and the event log live.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Every rootfs is mounted beneath this directory; a plan's mount_point is relative to
    /// it [default: <run dir>/rootfs, i.e. /run/layerpass/rootfs].
    #[arg(long, value_name = "DIR")]
    pub rootfs_root: Option<PathBuf>,
    /// How long to wait for a layer or scratch disk to appear, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub device_timeout: f64,
    /// How layers are measured.
    #[command(flatten)]
    pub measure: MeasureArgs,
}

/// How layers are measured; shared by every command (`list` measures nothing).
#[derive(Debug, Clone, Args)]
pub struct MeasureArgs {
    /// auto: the attestation agent if its socket exists, else the TPM if its device
    /// exists, else the JSON-lines event log only (refused with --confidential: pass
    /// `--measure log` to run unmeasured).
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub measure: MeasureMode,
    /// The register: the TPM's PCR (0-15) [default: 14], or the register asked of the
    /// attestation agent [default: its own, 17].
    #[arg(long, value_name = "N")]
    pub pcr: Option<u32>,
    /// The attestation agent's ttrpc socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub aa_socket: PathBuf,
    /// The TPM's character device (the kernel's resource manager).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DEVICE)]
    pub tpm_device: PathBuf,
    /// With --confidential: accept the attestation agent's NOT_ENABLED and NOT_SUPPORTED
    /// answers (the layer is not measured; a warning and Status say so) instead of
    /// refusing the mount.
    #[arg(long)]
    pub allow_unmeasured: bool,
}

/// The transports `serve` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// AF_VSOCK on --port.
    Vsock,
    /// The virtio-serial port --device.
    VirtioSerial,
    /// The unix socket --socket.
    Unix,
}

/// `serve` arguments.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Which transport to listen on.
    #[arg(long, value_enum, default_value = "vsock")]
    pub transport: TransportKind,
    /// vsock port [default: 1027].
    #[arg(long, value_name = "N")]
    pub port: Option<u32>,
    /// Accept vsock connections from this peer CID (repeat for several) instead of only
    /// the host's (CID 2).
    #[arg(long, value_name = "CID")]
    pub vsock_allow_cid: Vec<u32>,
    /// virtio-serial port: a name under /dev/virtio-ports or an absolute path.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// unix socket path.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Policy and state.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `mount` arguments.
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// The plan: a MountRequest in the protobuf JSON mapping ("-" reads stdin).
    #[arg(long, value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// Print the whole result (MountResponse in JSON) instead of the rootfs path.
    #[arg(long)]
    pub json: bool,
    /// Policy and state.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `unmount` arguments.
#[derive(Debug, Clone, Args)]
pub struct UnmountArgs {
    /// The container id.
    pub id: String,
    /// Policy and state.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `list` arguments.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print a ListResponse in JSON instead of one `ID ROOTFS` line per container.
    #[arg(long)]
    pub json: bool,
    /// Policy and state.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `run` arguments.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The plan: a MountRequest in the protobuf JSON mapping.
    #[arg(long, value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// The process: {"args": [...], "env": ["K=V"], "cwd": "/", "user": "name:group"}.
    #[arg(long, value_name = "PROCESS.json")]
    pub process: PathBuf,
    /// The virtio-serial port (by name) or file (absolute path) for the JSON status lines.
    #[arg(long, value_name = "PORT")]
    pub status_port: String,
    /// The virtio-serial port (by name) or file (absolute path) for the process's stdout.
    #[arg(long, value_name = "PORT")]
    pub stdout_port: String,
    /// The virtio-serial port (by name) or file (absolute path) for the process's stderr.
    #[arg(long, value_name = "PORT")]
    pub stderr_port: String,
    /// How long to wait for each port to appear, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub port_timeout: f64,
    /// Policy and state.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

fn invalid(message: String) -> Failure {
    Failure::new(Kind::InvalidArgument, message)
}

impl PolicyArgs {
    /// The agent configuration these flags describe (reads the reference values file).
    pub fn config(&self) -> Result<AgentConfig, Failure> {
        let device_timeout = Duration::try_from_secs_f64(self.device_timeout)
            .map_err(|e| invalid(format!("--device-timeout {}: {e}", self.device_timeout)))?;
        let reference_values = match (&self.reference_values, &self.initdata) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "--reference-values and --initdata both give the reference values: \
                     give one"
                        .into(),
                ));
            }
            (Some(file), None) => Some(ReferenceValues::load(file)?),
            (None, Some(file)) => Some(policy_initdata::load(file)?.reference_values),
            (None, None) => None,
        };
        if self.confidential && reference_values.is_none() {
            return Err(invalid(
                "--confidential needs --reference-values FILE or --initdata [FILE] (the \
                 trusted root hashes)"
                    .into(),
            ));
        }
        let mut config = AgentConfig::with_run_dir(self.run_dir.clone());
        config.require_verity = self.require_verity || self.confidential;
        config.reference_values = reference_values;
        config.device_timeout = device_timeout;
        if let Some(root) = &self.rootfs_root {
            config.rootfs_root.clone_from(root);
        }
        Ok(config)
    }
}

impl PolicyArgs {
    /// The measurement options these flags describe.
    pub fn measure_options(&self) -> MeasureOptions {
        let m = &self.measure;
        MeasureOptions {
            mode: m.measure,
            pcr: m.pcr,
            aa_socket: m.aa_socket.clone(),
            tpm_device: m.tpm_device.clone(),
            confidential: self.confidential,
            allow_unmeasured: m.allow_unmeasured,
        }
    }

    /// The backend the flags select on this machine (checked before anything is
    /// mounted or created).
    pub fn backend(&self) -> Result<Backend, Failure> {
        if self.measure.allow_unmeasured && !self.confidential {
            return Err(invalid(
                "--allow-unmeasured only applies with --confidential (otherwise nothing refuses an unmeasured layer)".into(),
            ));
        }
        self.measure_options().resolve(&FsProbe).map_err(|e| {
            let kind = match e {
                ModeError::NothingToMeasureWith { .. } => Kind::FailedPrecondition,
                _ => Kind::InvalidArgument,
            };
            Failure::new(kind, e.to_string())
        })
    }

    /// An agent on the real kernel with these flags' configuration and measurement
    /// backend.
    pub fn measured_agent(&self) -> Result<Agent, Failure> {
        let config = self.config()?;
        let backend = self.backend()?;
        self.agent_with(config, &backend)
    }

    /// An agent on the real kernel with `config` (from [`Self::config`]) and `backend`
    /// (from [`Self::backend`]), for callers that check the flags before other work.
    pub fn agent_with(&self, config: AgentConfig, backend: &Backend) -> Result<Agent, Failure> {
        let run_dir = config.run_dir.clone();
        let agent = Agent::new(config)?;
        let measurer = Measurer::start(backend, &self.measure_options(), &run_dir)
            .map_err(|e| Failure::new(Kind::FailedPrecondition, Chain(&e).to_string()))?;
        Ok(match measurer {
            Some(m) => agent.with_recorder(m),
            None => agent,
        })
    }
}

impl RunArgs {
    /// `--port-timeout` as a duration.
    pub fn port_timeout(&self) -> Result<Duration, Failure> {
        Duration::try_from_secs_f64(self.port_timeout)
            .map_err(|e| invalid(format!("--port-timeout {}: {e}", self.port_timeout)))
    }
}

impl ServeArgs {
    /// The transport these flags select; the flag of another transport is an error.
    pub fn transport(&self) -> Result<Transport, Failure> {
        let port_given = self.port.is_some();
        let transport = match self.transport {
            TransportKind::Vsock => {
                if self.device.is_some() || self.socket.is_some() {
                    return Err(invalid(
                        "--transport vsock takes --port, not --device or --socket".into(),
                    ));
                }
                let port = self.port.unwrap_or(DEFAULT_VSOCK_PORT);
                if self.vsock_allow_cid.is_empty() {
                    Transport::vsock(port)
                } else {
                    Transport::vsock_allowing(port, self.vsock_allow_cid.clone())
                }
            }
            TransportKind::VirtioSerial => {
                let Some(device) = &self.device else {
                    return Err(invalid(
                        "--transport virtio-serial needs --device NAME".into(),
                    ));
                };
                if port_given || self.socket.is_some() || !self.vsock_allow_cid.is_empty() {
                    return Err(invalid(
                        "--transport virtio-serial takes --device, not --port or --socket".into(),
                    ));
                }
                Transport::virtio_serial(device)
            }
            TransportKind::Unix => {
                let Some(socket) = &self.socket else {
                    return Err(invalid("--transport unix needs --socket PATH".into()));
                };
                if port_given || self.device.is_some() || !self.vsock_allow_cid.is_empty() {
                    return Err(invalid(
                        "--transport unix takes --socket, not --port or --device".into(),
                    ));
                }
                Transport::unix(socket)
            }
        };
        transport.map_err(|e| invalid(Chain(&e).to_string()))
    }
}

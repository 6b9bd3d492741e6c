//! Which backend measures the layers: `--measure auto|aa|tpm|log`, the register
//! (`--pcr`), and the rule that a confidential agent never runs unmeasured by accident.

use std::fmt;
use std::path::{Path, PathBuf};

/// What `--measure` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum MeasureMode {
    /// The attestation agent if its socket is there, else the TPM if its device is there,
    /// else the JSON-lines event log only (refused in confidential mode).
    Auto,
    /// The attestation agent's `ExtendRuntimeMeasurement`.
    Aa,
    /// A TPM PCR through the kernel's resource manager, with an event log.
    Tpm,
    /// The JSON-lines event log only: nothing is extended.
    Log,
}

/// The backend in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The attestation agent at `socket`, extending `register` (`None`: the agent's
    /// configured one, `init_pcr`, 17 by default, which it maps to the platform's
    /// register, RTMR3 on TDX).
    Aa {
        /// The agent's unix socket.
        socket: PathBuf,
        /// The register asked for.
        register: Option<u32>,
    },
    /// The TPM at `device`, extending `pcr` in the SHA-256 bank.
    Tpm {
        /// The character device.
        device: PathBuf,
        /// The PCR.
        pcr: u32,
    },
    /// Nothing is extended.
    Log,
}

impl Backend {
    /// `aa`, `tpm` or `log`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Aa { .. } => "aa",
            Self::Tpm { .. } => "tpm",
            Self::Log => "log",
        }
    }

    /// The register extended, when known.
    pub fn register(&self) -> Option<u32> {
        match self {
            Self::Aa { register, .. } => *register,
            Self::Tpm { pcr, .. } => Some(*pcr),
            Self::Log => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The default PCR of the TPM backend: in the static-OS range (8 to 15), never reset,
/// extendable from locality 0 and unused by a guest booted directly from a kernel.
pub const DEFAULT_PCR: u32 = 14;

/// How the agent measures, as the flags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureOptions {
    /// `--measure`.
    pub mode: MeasureMode,
    /// `--pcr`: the TPM's PCR ([`DEFAULT_PCR`] when absent) or the register asked of the
    /// attestation agent (its own default when absent).
    pub pcr: Option<u32>,
    /// `--aa-socket`.
    pub aa_socket: PathBuf,
    /// `--tpm-device`.
    pub tpm_device: PathBuf,
    /// `--confidential`: measuring failures refuse the mount, and `auto` never settles
    /// for the log only.
    pub confidential: bool,
    /// `--allow-unmeasured`: in confidential mode, accept the attestation agent's
    /// `NOT_ENABLED` and `NOT_SUPPORTED` answers instead of refusing the mount.
    pub allow_unmeasured: bool,
}

/// A measurement configuration the agent refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// Beyond the 24 PCRs of a PC-client TPM.
    #[error("--pcr {pcr}: a TPM has PCRs 0 to 23")]
    PcrOutOfRange {
        /// The PCR asked for.
        pcr: u32,
    },
    /// A DRTM PCR, which the TPM extends only from localities 2 to 4.
    #[error(
        "--pcr {pcr}: PCRs 17 to 22 accept extends only from localities 2 to 4 (dynamic root \
         of trust); Linux talks to the TPM at locality 0, so every extend would fail with \
         TPM_RC_LOCALITY (the default, PCR 14, is extendable and never reset)"
    )]
    PcrLocality {
        /// The PCR asked for.
        pcr: u32,
    },
    /// A debug or application PCR that anyone at locality 0 can reset.
    #[error(
        "--pcr {pcr}: PCRs 16 and 23 can be reset from locality 0, so anyone in the guest \
         could wipe the measurements and extend others (the default, PCR 14, is never reset)"
    )]
    PcrResettable {
        /// The PCR asked for.
        pcr: u32,
    },
    /// Confidential mode, `auto`, and neither backend there.
    #[error(
        "--confidential with --measure auto found neither an attestation agent socket at {} \
         nor a TPM at {}: pass --measure aa or --measure tpm, or --measure log to run with the \
         JSON-lines event log only (nothing is extended into a measurement register)",
        aa_socket.display(),
        tpm_device.display()
    )]
    NothingToMeasureWith {
        /// Where the socket was looked for.
        aa_socket: PathBuf,
        /// Where the TPM was looked for.
        tpm_device: PathBuf,
    },
}

/// Checks a PCR for the TPM backend: 0 to 15 (16 to 23 are refused, with the reason).
pub fn check_tpm_pcr(pcr: u32) -> Result<u32, ModeError> {
    match pcr {
        0..=15 => Ok(pcr),
        16 | 23 => Err(ModeError::PcrResettable { pcr }),
        17..=22 => Err(ModeError::PcrLocality { pcr }),
        _ => Err(ModeError::PcrOutOfRange { pcr }),
    }
}

/// What is present on this machine, for `auto`.
pub trait Probe {
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsProbe;

impl Probe for FsProbe {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

impl MeasureOptions {
    /// The backend these options select; `auto` looks at what `probe` finds.
    pub fn resolve(&self, probe: &dyn Probe) -> Result<Backend, ModeError> {
        if let Some(pcr) = self.pcr
            && pcr >= super::tpm::command::PCR_COUNT
        {
            return Err(ModeError::PcrOutOfRange { pcr });
        }
        let aa = || Backend::Aa {
            socket: self.aa_socket.clone(),
            register: self.pcr,
        };
        let tpm = || {
            Ok(Backend::Tpm {
                device: self.tpm_device.clone(),
                pcr: check_tpm_pcr(self.pcr.unwrap_or(DEFAULT_PCR))?,
            })
        };
        match self.mode {
            MeasureMode::Aa => Ok(aa()),
            MeasureMode::Tpm => tpm(),
            MeasureMode::Log => Ok(Backend::Log),
            MeasureMode::Auto if probe.exists(&self.aa_socket) => Ok(aa()),
            MeasureMode::Auto if probe.exists(&self.tpm_device) => tpm(),
            MeasureMode::Auto if self.confidential => Err(ModeError::NothingToMeasureWith {
                aa_socket: self.aa_socket.clone(),
                tpm_device: self.tpm_device.clone(),
            }),
            MeasureMode::Auto => Ok(Backend::Log),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    struct Present(HashSet<PathBuf>);

    impl Probe for Present {
        fn exists(&self, path: &Path) -> bool {
            self.0.contains(path)
        }
    }

    const SOCK: &str = "/run/aa.sock";
    const TPM: &str = "/dev/tpmrm0";

    fn options(mode: MeasureMode, pcr: Option<u32>, confidential: bool) -> MeasureOptions {
        MeasureOptions {
            mode,
            pcr,
            aa_socket: SOCK.into(),
            tpm_device: TPM.into(),
            confidential,
            allow_unmeasured: false,
        }
    }

    fn present(paths: &[&str]) -> Present {
        Present(paths.iter().map(PathBuf::from).collect())
    }

    fn aa(register: Option<u32>) -> Backend {
        Backend::Aa {
            socket: SOCK.into(),
            register,
        }
    }

    fn tpm(pcr: u32) -> Backend {
        Backend::Tpm {
            device: TPM.into(),
            pcr,
        }
    }

    #[test]
    fn auto_prefers_the_attestation_agent_then_the_tpm_then_the_log() {
        let auto = |found: &[&str], confidential| {
            options(MeasureMode::Auto, None, confidential).resolve(&present(found))
        };
        for confidential in [false, true] {
            assert_eq!(auto(&[SOCK, TPM], confidential), Ok(aa(None)));
            assert_eq!(auto(&[TPM], confidential), Ok(tpm(DEFAULT_PCR)));
        }
        assert_eq!(auto(&[], false), Ok(Backend::Log));
    }

    #[test]
    fn confidential_auto_never_falls_back_to_the_log_only() {
        let err = options(MeasureMode::Auto, None, true)
            .resolve(&present(&[]))
            .unwrap_err();
        assert_eq!(
            err,
            ModeError::NothingToMeasureWith {
                aa_socket: SOCK.into(),
                tpm_device: TPM.into()
            }
        );
        assert!(err.to_string().contains("--measure log"), "{err}");
        // Chosen explicitly, the log only is allowed.
        let log = options(MeasureMode::Log, None, true).resolve(&present(&[]));
        assert_eq!(log, Ok(Backend::Log));
    }

    #[test]
    fn explicit_modes_do_not_probe() {
        let none = present(&[]);
        assert_eq!(
            options(MeasureMode::Aa, None, true).resolve(&none),
            Ok(aa(None))
        );
        assert_eq!(
            options(MeasureMode::Tpm, Some(9), true).resolve(&none),
            Ok(tpm(9))
        );
        assert_eq!(
            options(MeasureMode::Log, None, false).resolve(&present(&[SOCK, TPM])),
            Ok(Backend::Log)
        );
    }

    #[test]
    fn tpm_pcrs_17_to_22_are_refused_for_locality_and_16_23_for_reset() {
        for pcr in 0..=15 {
            assert_eq!(check_tpm_pcr(pcr), Ok(pcr));
        }
        for pcr in 17..=22 {
            let err = check_tpm_pcr(pcr).unwrap_err();
            assert_eq!(err, ModeError::PcrLocality { pcr });
            assert!(err.to_string().contains("TPM_RC_LOCALITY"), "{err}");
        }
        for pcr in [16, 23] {
            assert_eq!(check_tpm_pcr(pcr), Err(ModeError::PcrResettable { pcr }));
        }
        assert_eq!(check_tpm_pcr(24), Err(ModeError::PcrOutOfRange { pcr: 24 }));
        let tpm17 = options(MeasureMode::Tpm, Some(17), false).resolve(&present(&[TPM]));
        assert_eq!(tpm17, Err(ModeError::PcrLocality { pcr: 17 }));
        let auto17 = options(MeasureMode::Auto, Some(17), false).resolve(&present(&[TPM]));
        assert_eq!(auto17, Err(ModeError::PcrLocality { pcr: 17 }));
    }

    #[test]
    fn the_attestation_agent_gets_the_register_asked_for_or_its_own() {
        // 17 is the attestation agent's default (RTMR3 on TDX): its mapping, not ours.
        let r = options(MeasureMode::Aa, Some(17), true).resolve(&present(&[]));
        assert_eq!(r, Ok(aa(Some(17))));
        let r = options(MeasureMode::Aa, Some(24), true).resolve(&present(&[]));
        assert_eq!(r, Err(ModeError::PcrOutOfRange { pcr: 24 }));
        assert_eq!(aa(None).register(), None);
        assert_eq!(tpm(14).register(), Some(14));
        assert_eq!(
            [aa(None).name(), tpm(1).name(), Backend::Log.name()],
            ["aa", "tpm", "log"]
        );
    }
}

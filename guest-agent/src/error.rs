//! Agent errors: a kind (mapped one-to-one to ttrpc status codes by the server) plus a
//! message that names the container, the layer (index and digest) and the step.

use std::fmt;

/// What went wrong, coarsely: the server maps each kind to one ttrpc status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The plan (or a configuration value) is malformed.
    InvalidArgument,
    /// A disk, device or file the plan names does not exist (after waiting for it).
    NotFound,
    /// The container is already mounted, or a name is taken by something else.
    AlreadyExists,
    /// The system is not in a state that allows the operation (missing kernel feature,
    /// busy mount, too many layers for the kernel's limits).
    FailedPrecondition,
    /// Policy refused the plan (verity required, root hash not in the reference values).
    PermissionDenied,
    /// The agent cannot serve now (run directory locked by another agent).
    Unavailable,
    /// Anything else: a kernel call failed in a way the caller cannot fix.
    Internal,
}

impl ErrorKind {
    /// The kind's name as the ttrpc code is spelled (`INVALID_ARGUMENT`, ...).
    pub fn code_name(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code_name())
    }
}

/// The step of a request an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Checking the plan's fields.
    Validate,
    /// Policy: verity required, reference values.
    Policy,
    /// Loading the configuration (reference values file, run directory).
    Config,
    /// Finding (and waiting for) a disk by serial or partition name.
    FindDisk,
    /// Creating, loading or removing the dm-verity device.
    DmVerity,
    /// Mounting the layer's EROFS filesystem.
    MountErofs,
    /// Mounting the writable upper (scratch disk or tmpfs).
    Upper,
    /// Mounting the overlay.
    Overlay,
    /// Writing the event log.
    EventLog,
    /// Saving or loading the agent's state under the run directory.
    State,
    /// Unmounting a container or a layer.
    Unmount,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Validate => "validate plan",
            Self::Policy => "policy",
            Self::Config => "config",
            Self::FindDisk => "find disk",
            Self::DmVerity => "dm-verity",
            Self::MountErofs => "mount erofs",
            Self::Upper => "mount upper",
            Self::Overlay => "overlay",
            Self::EventLog => "event log",
            Self::State => "state",
            Self::Unmount => "unmount",
        })
    }
}

/// The layer an error is about: its index in the plan (0 = top) and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// Index in the plan's layer list, top layer first.
    pub index: usize,
    /// The layer's digest as the plan gives it.
    pub digest: String,
}

/// An agent error. Its `Display` is the whole story, in one line:
/// `container c1: layer 2 (sha256:ab..): dm-verity: <what failed>`.
#[derive(Debug, Clone)]
pub struct AgentError {
    kind: ErrorKind,
    step: Step,
    container: Option<String>,
    layer: Option<LayerRef>,
    message: String,
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.container {
            write!(f, "container {c}: ")?;
        }
        if let Some(l) = &self.layer {
            write!(f, "layer {} ({}): ", l.index, l.digest)?;
        }
        write!(f, "{}: {}", self.step, self.message)
    }
}

impl std::error::Error for AgentError {}

impl AgentError {
    /// A new error of `kind` in `step`.
    pub fn new(kind: ErrorKind, step: Step, message: impl Into<String>) -> Self {
        Self {
            kind,
            step,
            container: None,
            layer: None,
            message: message.into(),
        }
    }

    /// An error from an OS call: the kind follows the errno (`ENOENT` → NotFound,
    /// `EEXIST` → AlreadyExists, `EBUSY` → FailedPrecondition, `EACCES`/`EPERM` →
    /// PermissionDenied, anything else → Internal); the message ends with the OS error.
    pub fn io(step: Step, what: impl fmt::Display, err: &std::io::Error) -> Self {
        let kind = match err.raw_os_error() {
            Some(libc_errno::ENOENT | libc_errno::ENXIO | libc_errno::ENODEV) => {
                ErrorKind::NotFound
            }
            Some(libc_errno::EEXIST) => ErrorKind::AlreadyExists,
            Some(libc_errno::EBUSY) => ErrorKind::FailedPrecondition,
            Some(libc_errno::EACCES | libc_errno::EPERM) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, step, format!("{what}: {err}"))
    }

    /// The same error, about the given layer.
    #[must_use]
    pub fn layer(mut self, index: usize, digest: &str) -> Self {
        self.layer = Some(LayerRef {
            index,
            digest: digest.to_owned(),
        });
        self
    }

    /// The same error, about the given container.
    #[must_use]
    pub fn container(mut self, id: &str) -> Self {
        if self.container.is_none() {
            self.container = Some(id.to_owned());
        }
        self
    }

    /// What went wrong, coarsely.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The step the error happened in.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The layer the error is about, if any.
    pub fn layer_ref(&self) -> Option<&LayerRef> {
        self.layer.as_ref()
    }

    /// The container the error is about, if any.
    pub fn container_id(&self) -> Option<&str> {
        self.container.as_deref()
    }

    /// The message without the container, layer and step prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The errno values the kind mapping looks at (Linux numbers).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ENXIO: i32 = 6;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_container_layer_and_step() {
        let e = AgentError::new(ErrorKind::NotFound, Step::FindDisk, "no disk with serial x")
            .layer(2, "sha256:ab")
            .container("c1");
        assert_eq!(
            e.to_string(),
            "container c1: layer 2 (sha256:ab): find disk: no disk with serial x"
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn io_errors_map_errno_to_kind() {
        let e = AgentError::io(
            Step::Unmount,
            "umount /x",
            &std::io::Error::from_raw_os_error(16),
        );
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert!(e.to_string().starts_with("unmount: umount /x: "));
    }
}

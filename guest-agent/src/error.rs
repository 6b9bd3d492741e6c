//! Agent errors: a kind (the protocol's [`Kind`], which decides the ttrpc code and the
//! command line's exit status), the step, the container and layer (index and digest), a
//! message, and the cause (an OS error, say) as the error's [`source`](Error::source).
//!
//! `Display` never repeats the source: whoever reports an error prints it with its causes
//! once, through [`Chain`] (the server's status message, the command line, the logs).

use std::error::Error;
use std::fmt;
use std::io;

use layerpass_protocols::status::Kind;

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

/// What an error is about: the `container c1: layer 2 (sha256:ab..): ` prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Subject {
    container: Option<String>,
    layer: Option<LayerRef>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.container {
            write!(f, "container {c}: ")?;
        }
        if let Some(l) = &self.layer {
            if l.digest.is_empty() {
                write!(f, "layer {} (digest unknown): ", l.index)?;
            } else {
                write!(f, "layer {} ({}): ", l.index, l.digest)?;
            }
        }
        Ok(())
    }
}

/// The cause of an agent error.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// An agent error. Its `Display` is one line without the cause:
/// `container c1: layer 2 (sha256:ab..): dm-verity: loading table .. into lp-..`; with
/// [`AgentError::chain`] the causes follow (`: Device or resource busy (os error 16)`).
#[derive(Debug, thiserror::Error)]
#[error("{subject}{step}: {message}")]
pub struct AgentError {
    kind: Kind,
    step: Step,
    subject: Subject,
    message: String,
    #[source]
    source: Option<Cause>,
}

impl AgentError {
    /// A new error of `kind` in `step`.
    pub fn new(kind: Kind, step: Step, message: impl Into<String>) -> Self {
        Self {
            kind,
            step,
            subject: Subject::default(),
            message: message.into(),
            source: None,
        }
    }

    /// An error from an OS call while doing `what`: the kind follows the errno
    /// ([`errno_kind`]) and the OS error is the source.
    pub fn io(step: Step, what: impl Into<String>, err: io::Error) -> Self {
        Self::new(errno_kind(&err), step, what).with_source(err)
    }

    /// The same error, caused by `source`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Cause>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same error, about the given layer.
    #[must_use]
    pub fn layer(mut self, index: usize, digest: &str) -> Self {
        self.subject.layer = Some(LayerRef {
            index,
            digest: digest.to_owned(),
        });
        self
    }

    /// The same error, about the given container.
    #[must_use]
    pub fn container(mut self, id: &str) -> Self {
        if self.subject.container.is_none() {
            self.subject.container = Some(id.to_owned());
        }
        self
    }

    /// What went wrong, coarsely.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The step the error happened in.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The layer the error is about, if any.
    pub fn layer_ref(&self) -> Option<&LayerRef> {
        self.subject.layer.as_ref()
    }

    /// The container the error is about, if any.
    pub fn container_id(&self) -> Option<&str> {
        self.subject.container.as_deref()
    }

    /// The message without the container, layer and step prefix, and without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error followed by its causes, for reports.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// The kind of an OS error, by the one table both agents share ([`Kind::of_io`]); an
/// error without an errno is Internal here (the kernel interfaces always give one).
pub fn errno_kind(err: &io::Error) -> Kind {
    if err.raw_os_error().is_some() {
        Kind::of_io(err)
    } else {
        Kind::Internal
    }
}

/// An error and its causes on one line, `: `-separated, each printed once. This crate's
/// errors leave their source out of their own `Display`; a cause that an error from
/// elsewhere already printed at the end of its message (`"...: {source}"`, as ttrpc's
/// errors do) is not printed again.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl layerpass_protocols::status::HasKind for AgentError {
    fn kind(&self) -> Kind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    #[test]
    fn display_names_container_layer_and_step() {
        let e = AgentError::new(Kind::NotFound, Step::FindDisk, "no disk with serial x")
            .layer(2, "sha256:ab")
            .container("c1");
        assert_eq!(
            e.to_string(),
            "container c1: layer 2 (sha256:ab): find disk: no disk with serial x"
        );
        assert_eq!(e.kind(), Kind::NotFound);
        assert!(e.source().is_none());
        assert_eq!(e.chain().to_string(), e.to_string());
    }

    #[test]
    fn io_errors_map_errno_to_kind_and_keep_the_cause_as_source() {
        let e = AgentError::io(Step::Unmount, "umount /x", io::Error::from(Errno::BUSY))
            .container("c1");
        assert_eq!(e.kind(), Kind::FailedPrecondition);
        assert_eq!(e.to_string(), "container c1: unmount: umount /x");
        let os = io::Error::from(Errno::BUSY).to_string();
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some(os.as_str())
        );
        // The cause is printed once, by the chain.
        assert_eq!(
            e.chain().to_string(),
            format!("container c1: unmount: umount /x: {os}")
        );
        for (errno, kind) in [
            (Errno::NOENT, Kind::NotFound),
            (Errno::NXIO, Kind::NotFound),
            (Errno::NODEV, Kind::NotFound),
            (Errno::EXIST, Kind::AlreadyExists),
            (Errno::ACCESS, Kind::PermissionDenied),
            (Errno::PERM, Kind::PermissionDenied),
            (Errno::IO, Kind::Internal),
        ] {
            assert_eq!(errno_kind(&io::Error::from(errno)), kind, "{errno:?}");
        }
        assert_eq!(errno_kind(&io::Error::other("no errno")), Kind::Internal);
    }

    #[test]
    fn a_chain_prints_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] AgentError);
        let inner = AgentError::new(Kind::Internal, Step::State, "writing state")
            .with_source(io::Error::other("disk full"));
        let e = Outer(inner);
        assert_eq!(
            Chain(&e).to_string(),
            "outer: state: writing state: disk full"
        );

        // An error that prints its source itself does not get it twice.
        #[derive(Debug, thiserror::Error)]
        #[error("listening: {0}")]
        struct Inline(#[source] io::Error);
        let e = Inline(io::Error::from(Errno::ADDRINUSE));
        let os = io::Error::from(Errno::ADDRINUSE).to_string();
        assert_eq!(Chain(&e).to_string(), format!("listening: {os}"));
    }
}

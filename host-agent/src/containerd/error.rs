//! The one error type of the mount-list parser. Every variant about an entry names the
//! entry's index in the list and the text that was refused (a type, a source, an option or
//! the template inside one).

use layerpass_protocols::status::{HasKind, Kind};

/// Why a containerd mount list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountListError {
    #[error("mount list is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("mount list has {count} entries, more than the limit of {max}")]
    TooManyEntries { count: usize, max: usize },
    #[error("mount list is not a JSON array: {message}")]
    Json { message: String },
    #[error("mount {index} is not a containerd mount: {message}")]
    Entry { index: usize, message: String },
    #[error("mount list is empty")]
    Empty,
    #[error("mount {index}: unknown mount type {kind:?}")]
    UnknownType { index: usize, kind: String },
    #[error("mount {index}: target {text:?} is not supported (only whole mounts are)")]
    Target { index: usize, text: String },
    #[error("mount {index}: malformed template in {text:?}: {reason}")]
    MalformedTemplate {
        index: usize,
        text: String,
        reason: &'static str,
    },
    #[error(
        "mount {index}: unknown template function {function:?} in {text:?} \
         (only `mount N` and `overlay A B` are supported)"
    )]
    UnknownTemplate {
        index: usize,
        text: String,
        function: String,
    },
    #[error("mount {index}: {text:?} is not allowed to hold a template")]
    TemplateNotAllowed { index: usize, text: String },
    #[error(
        "mount {index}: template in {text:?} names mount {mount}, but only mounts 0..{index} \
         come before it"
    )]
    TemplateOutOfRange {
        index: usize,
        text: String,
        mount: u64,
    },
    #[error("mount {index}: {text:?} names mount {mount}, a {kind:?} mount, not an erofs layer")]
    TemplateNotLayer {
        index: usize,
        text: String,
        mount: usize,
        kind: String,
    },
    #[error("mount {index}: {text:?} lists layer mount {mount} twice")]
    DuplicateLayer {
        index: usize,
        text: String,
        mount: usize,
    },
    #[error("mount {index}: {text:?} does not list the erofs layer of mount {mount}")]
    MissingLayer {
        index: usize,
        text: String,
        mount: usize,
    },
    #[error(
        "mount {index}: {text:?} must name the erofs mounts by template ({{{{ mount N }}}} or {{{{ overlay A B }}}}), separated by ':'"
    )]
    LowerdirNotLayers { index: usize, text: String },
    #[error(
        "mount {index}: bind source {text:?} must be `{{{{ mount N }}}}` of the single erofs layer"
    )]
    BindNotOneLayer { index: usize, text: String },
    #[error("mount {index}: {text:?}: {reason}")]
    BadUpper {
        index: usize,
        text: String,
        reason: String,
    },
    #[error("mount {index}: path {text:?} {reason}")]
    BadPath {
        index: usize,
        text: String,
        reason: &'static str,
    },
    #[error(
        "mount {index}: erofs option {text:?}: the fsmeta (merged layers) form is not \
         supported, because containerd gives fsmeta mounts no dm-verity; configure the \
         snapshotter for one erofs mount per layer (no fsmeta.erofs)"
    )]
    Fsmeta { index: usize, text: String },
    #[error("mount {index}: option {text:?}: idmapped layers are not supported")]
    IdMapped { index: usize, text: String },
    #[error("mount {index}: unknown containerd option {text:?}")]
    UnknownContainerdOption { index: usize, text: String },
    #[error("mount {index}: unknown {kind} option {text:?}")]
    UnknownOption {
        index: usize,
        kind: String,
        text: String,
    },
    #[error("mount {index}: option {text:?} does not belong on a {kind:?} mount: {reason}")]
    MisplacedOption {
        index: usize,
        kind: String,
        text: String,
        reason: &'static str,
    },
    #[error("mount {index}: option {text:?} is given twice")]
    DuplicateOption { index: usize, text: String },
    #[error("mount {index}: option {text:?}: {reason}")]
    BadOptionValue {
        index: usize,
        text: String,
        reason: &'static str,
    },
    #[error("mount {index}: a {kind:?} mount needs the option {option}")]
    MissingOption {
        index: usize,
        kind: String,
        option: &'static str,
    },
    #[error("mount {index}: {kind:?} comes after the final overlay or bind mount")]
    MountAfterOverlay { index: usize, kind: String },
    #[error("mount {index}: {text:?} is a second writable upper")]
    SecondUpper { index: usize, text: String },
    #[error("mount {index}: the block image {text:?} must be the first mount")]
    UpperNotFirst { index: usize, text: String },
    #[error("mount {index}: the block image {text:?} is not used as the overlay's upper")]
    UnusedUpper { index: usize, text: String },
    #[error(
        "mount {index}: {kind:?} ends a list of several mounts without an overlay \
         (only a single erofs mount stands alone)"
    )]
    NoOverlay { index: usize, kind: String },
    #[error(
        "mount {index}: {kind:?}: the list has no erofs layer (a base-layer extraction \
         mount, not a container root file system)"
    )]
    NoLayers { index: usize, kind: String },
}

impl MountListError {
    /// The index of the entry the error is about, if it is about one.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::TooLarge { .. }
            | Self::TooManyEntries { .. }
            | Self::Json { .. }
            | Self::Empty => None,
            Self::Entry { index, .. }
            | Self::UnknownType { index, .. }
            | Self::Target { index, .. }
            | Self::MalformedTemplate { index, .. }
            | Self::UnknownTemplate { index, .. }
            | Self::TemplateNotAllowed { index, .. }
            | Self::TemplateOutOfRange { index, .. }
            | Self::TemplateNotLayer { index, .. }
            | Self::DuplicateLayer { index, .. }
            | Self::MissingLayer { index, .. }
            | Self::LowerdirNotLayers { index, .. }
            | Self::BindNotOneLayer { index, .. }
            | Self::BadUpper { index, .. }
            | Self::BadPath { index, .. }
            | Self::Fsmeta { index, .. }
            | Self::IdMapped { index, .. }
            | Self::UnknownContainerdOption { index, .. }
            | Self::UnknownOption { index, .. }
            | Self::MisplacedOption { index, .. }
            | Self::DuplicateOption { index, .. }
            | Self::BadOptionValue { index, .. }
            | Self::MissingOption { index, .. }
            | Self::MountAfterOverlay { index, .. }
            | Self::SecondUpper { index, .. }
            | Self::UpperNotFirst { index, .. }
            | Self::UnusedUpper { index, .. }
            | Self::NoOverlay { index, .. }
            | Self::NoLayers { index, .. } => Some(*index),
        }
    }
}

impl HasKind for MountListError {
    /// Every refusal is about the list the caller sent.
    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}

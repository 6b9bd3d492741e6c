use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors setting up or running the vhost-user-blk engine (never caused by guest requests:
/// those become virtio status codes).
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("cannot listen on {path}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch the socket {path}")]
    Register {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("queue count {0} is outside 1..=8")]
    Queues(usize),
    #[error("cannot set up a queue: {0}")]
    Queue(String),
    #[error("cannot start the vhost engine's threads")]
    Thread(#[source] std::io::Error),
    #[error("the vhost engine has stopped")]
    Stopped,
}

impl HasKind for VhostError {
    fn kind(&self) -> Kind {
        match self {
            Self::Listen { source, .. } | Self::Register { source, .. } => Kind::of_io(source),
            Self::Queues(_) => Kind::InvalidArgument,
            Self::Thread(e) => Kind::of_io(e),
            Self::Stopped => Kind::Unavailable,
            Self::Queue(_) => Kind::Internal,
        }
    }
}

use std::path::PathBuf;

use layerpass_protocols::status::{HasKind, Kind};

/// Errors setting up or running the vhost-user-blk server (never caused by guest requests:
/// those become virtio status codes).
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("cannot listen on {path}")]
    Listen {
        path: PathBuf,
        #[source]
        source: vhost::vhost_user::Error,
    },
    /// vhost-user-backend's error implements only `Display`, so it is carried as text.
    #[error("cannot create the vhost-user daemon: {0}")]
    Daemon(String),
    #[error("cannot create the queue exit events")]
    ExitEvent(#[source] std::io::Error),
    #[error("queue count {0} is outside 1..=8")]
    Queues(usize),
    #[error("cannot start the server thread")]
    Thread(#[source] std::io::Error),
    #[error("the server thread for {0} panicked")]
    Panicked(PathBuf),
}

impl HasKind for VhostError {
    fn kind(&self) -> Kind {
        match self {
            Self::Listen { source, .. } => match source {
                vhost::vhost_user::Error::SocketError(e) => Kind::of_io(e),
                _ => Kind::Internal,
            },
            Self::Queues(_) => Kind::InvalidArgument,
            Self::ExitEvent(e) | Self::Thread(e) => Kind::of_io(e),
            Self::Daemon(_) | Self::Panicked(_) => Kind::Internal,
        }
    }
}

//! Error kinds ↔ ttrpc status codes, in one place.
//!
//! The guest agent maps its errors to a [`Kind`] and builds the ttrpc error with
//! [`Kind::to_ttrpc`]; clients read the kind back with [`Kind::from_ttrpc`]. The one-shot
//! command line uses [`Kind::name`] and [`Kind::exit_code`]. Every error type of both
//! agents says its kind through [`HasKind`]; an I/O error's kind follows its errno
//! ([`Kind::of_io`]).

use std::fmt;

use ttrpc::Code;

/// What went wrong, as the protocol reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The request or plan is malformed.
    InvalidArgument,
    /// A disk, partition or container does not exist (or did not appear in time).
    NotFound,
    /// The container id is already mounted.
    AlreadyExists,
    /// The guest is not in a state to do this (missing kernel feature, busy mount...).
    FailedPrecondition,
    /// The policy refused the request (verity required, root hash not in the reference values).
    PermissionDenied,
    /// A resource is temporarily unavailable.
    Unavailable,
    /// Anything else: a kernel call failed unexpectedly.
    Internal,
}

impl Kind {
    /// Every kind, in the order of their exit codes.
    pub const ALL: [Kind; 7] = [
        Kind::InvalidArgument,
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::FailedPrecondition,
        Kind::PermissionDenied,
        Kind::Unavailable,
        Kind::Internal,
    ];

    /// The ttrpc (gRPC) status code for this kind.
    pub fn code(self) -> Code {
        match self {
            Kind::InvalidArgument => Code::INVALID_ARGUMENT,
            Kind::NotFound => Code::NOT_FOUND,
            Kind::AlreadyExists => Code::ALREADY_EXISTS,
            Kind::FailedPrecondition => Code::FAILED_PRECONDITION,
            Kind::PermissionDenied => Code::PERMISSION_DENIED,
            Kind::Unavailable => Code::UNAVAILABLE,
            Kind::Internal => Code::INTERNAL,
        }
    }

    /// The kind a ttrpc status code stands for; codes the agent never sends map to
    /// [`Kind::Internal`].
    pub fn from_code(code: Code) -> Kind {
        match code {
            Code::INVALID_ARGUMENT => Kind::InvalidArgument,
            Code::NOT_FOUND => Kind::NotFound,
            Code::ALREADY_EXISTS => Kind::AlreadyExists,
            Code::FAILED_PRECONDITION => Kind::FailedPrecondition,
            Code::PERMISSION_DENIED => Kind::PermissionDenied,
            Code::UNAVAILABLE => Kind::Unavailable,
            _ => Kind::Internal,
        }
    }

    /// The name printed by the command line, e.g. `PermissionDenied`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "InvalidArgument",
            Kind::NotFound => "NotFound",
            Kind::AlreadyExists => "AlreadyExists",
            Kind::FailedPrecondition => "FailedPrecondition",
            Kind::PermissionDenied => "PermissionDenied",
            Kind::Unavailable => "Unavailable",
            Kind::Internal => "Internal",
        }
    }

    /// The process exit status of the one-shot commands for this kind (documented in
    /// docs/protocol.md). 1 is left for usage and I/O errors of the command line itself.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::InvalidArgument => 10,
            Kind::NotFound => 11,
            Kind::AlreadyExists => 12,
            Kind::FailedPrecondition => 13,
            Kind::PermissionDenied => 14,
            Kind::Unavailable => 15,
            Kind::Internal => 16,
        }
    }

    /// A ttrpc error with this kind's code and `message` (the error's `Display`, never its
    /// `Debug`).
    pub fn to_ttrpc(self, message: impl Into<String>) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), message.into()))
    }

    /// The kind and message of a ttrpc error returned by a call; transport errors
    /// (socket closed, timeout...) are [`Kind::Unavailable`].
    pub fn from_ttrpc(err: &ttrpc::Error) -> (Kind, String) {
        match err {
            ttrpc::Error::RpcStatus(status) => {
                (Kind::from_code(status.code()), status.message().to_owned())
            }
            other => (Kind::Unavailable, other.to_string()),
        }
    }
}

/// An error that knows its [`Kind`]: every error type of the host and guest agents.
pub trait HasKind {
    /// The kind: the ttrpc code and exit status it is reported with.
    fn kind(&self) -> Kind;
}

impl Kind {
    /// The kind of an I/O error, from its errno: a missing file, device or address is
    /// [`Kind::NotFound`], an existing one [`Kind::AlreadyExists`], a busy one
    /// [`Kind::FailedPrecondition`], a refused one [`Kind::PermissionDenied`]; the rest
    /// [`Kind::Internal`].
    pub fn of_io(err: &std::io::Error) -> Kind {
        match err.raw_os_error() {
            Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => Kind::NotFound,
            Some(libc::EEXIST) => Kind::AlreadyExists,
            Some(libc::EBUSY) => Kind::FailedPrecondition,
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => Kind::PermissionDenied,
            Some(_) => Kind::Internal,
            None => match err.kind() {
                std::io::ErrorKind::NotFound => Kind::NotFound,
                std::io::ErrorKind::AlreadyExists => Kind::AlreadyExists,
                std::io::ErrorKind::PermissionDenied => Kind::PermissionDenied,
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                    Kind::InvalidArgument
                }
                _ => Kind::Internal,
            },
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_exit_codes_are_distinct() {
        let mut exits = std::collections::HashSet::new();
        for kind in Kind::ALL {
            assert_eq!(Kind::from_code(kind.code()), kind);
            assert!(
                exits.insert(kind.exit_code()),
                "{kind} shares its exit code"
            );
            assert!(kind.exit_code() > 1);
            let (back, message) = Kind::from_ttrpc(&kind.to_ttrpc(format!("{kind} happened")));
            assert_eq!(back, kind);
            assert_eq!(message, format!("{} happened", kind.name()));
        }
        assert_eq!(Kind::from_code(Code::UNKNOWN), Kind::Internal);
        assert_eq!(Kind::PermissionDenied.code(), Code::PERMISSION_DENIED);
    }

    #[test]
    fn io_errors_by_errno() {
        use std::io::Error;
        let cases = [
            (libc::ENOENT, Kind::NotFound),
            (libc::ENODEV, Kind::NotFound),
            (libc::ENXIO, Kind::NotFound),
            (libc::EEXIST, Kind::AlreadyExists),
            (libc::EBUSY, Kind::FailedPrecondition),
            (libc::EACCES, Kind::PermissionDenied),
            (libc::EPERM, Kind::PermissionDenied),
            (libc::EIO, Kind::Internal),
            (libc::ENOSPC, Kind::Internal),
        ];
        for (errno, kind) in cases {
            assert_eq!(
                Kind::of_io(&Error::from_raw_os_error(errno)),
                kind,
                "{errno}"
            );
        }
        let data = Error::new(std::io::ErrorKind::InvalidData, "bad");
        assert_eq!(Kind::of_io(&data), Kind::InvalidArgument);
    }

    #[test]
    fn transport_errors_are_unavailable() {
        let (kind, message) = Kind::from_ttrpc(&ttrpc::Error::LocalClosed);
        assert_eq!(kind, Kind::Unavailable);
        assert!(!message.is_empty());
    }
}

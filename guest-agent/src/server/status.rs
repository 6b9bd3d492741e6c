//! Agent errors → ttrpc status codes: the only place the server decides a code. The
//! message is the error's `Display` (container, layer, step and cause), never `Debug`.

use layerpass_protocols::status::Kind;

use crate::error::{AgentError, ErrorKind};

/// The protocol's kind for an agent error kind (one to one).
pub fn kind(kind: ErrorKind) -> Kind {
    match kind {
        ErrorKind::InvalidArgument => Kind::InvalidArgument,
        ErrorKind::NotFound => Kind::NotFound,
        ErrorKind::AlreadyExists => Kind::AlreadyExists,
        ErrorKind::FailedPrecondition => Kind::FailedPrecondition,
        ErrorKind::PermissionDenied => Kind::PermissionDenied,
        ErrorKind::Unavailable => Kind::Unavailable,
        ErrorKind::Internal => Kind::Internal,
    }
}

/// The ttrpc error a handler returns for `err`.
pub fn rpc_error(err: &AgentError) -> layerpass_protocols::ttrpc::Error {
    kind(err.kind()).to_ttrpc(err.to_string())
}

#[cfg(test)]
mod tests {
    use layerpass_protocols::ttrpc::{Code, Error};

    use super::*;
    use crate::error::Step;

    #[test]
    fn every_kind_gets_its_own_code_and_the_display_message() {
        let cases = [
            (ErrorKind::InvalidArgument, Code::INVALID_ARGUMENT),
            (ErrorKind::NotFound, Code::NOT_FOUND),
            (ErrorKind::AlreadyExists, Code::ALREADY_EXISTS),
            (ErrorKind::FailedPrecondition, Code::FAILED_PRECONDITION),
            (ErrorKind::PermissionDenied, Code::PERMISSION_DENIED),
            (ErrorKind::Unavailable, Code::UNAVAILABLE),
            (ErrorKind::Internal, Code::INTERNAL),
        ];
        for (agent_kind, code) in cases {
            let err = AgentError::new(agent_kind, Step::DmVerity, "table load failed")
                .layer(2, "sha256:ab")
                .container("c1");
            let Error::RpcStatus(status) = rpc_error(&err) else {
                panic!("{agent_kind:?} did not become an RPC status");
            };
            assert_eq!(status.code(), code, "{agent_kind:?}");
            assert_eq!(
                status.message(),
                "container c1: layer 2 (sha256:ab): dm-verity: table load failed"
            );
            assert_eq!(kind(agent_kind).code(), code);
        }
    }
}

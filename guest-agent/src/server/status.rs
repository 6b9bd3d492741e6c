//! Agent errors → ttrpc status: the code is the error's kind's (the table is in
//! `layerpass_protocols::status`); the message is the error with its causes, each once
//! (container, layer, step, what failed, then the OS error), never `Debug`.

use crate::error::AgentError;

/// The ttrpc error a handler returns for `err`.
pub fn rpc_error(err: &AgentError) -> layerpass_protocols::ttrpc::Error {
    err.kind().to_ttrpc(err.chain().to_string())
}

#[cfg(test)]
mod tests {
    use layerpass_protocols::ttrpc::Error;
    use rustix::io::Errno;

    use layerpass_protocols::status::Kind;

    use super::*;
    use crate::error::Step;

    #[test]
    fn every_kind_gets_its_code_and_the_message_names_the_cause_once() {
        for kind in Kind::ALL {
            let err = AgentError::new(kind, Step::DmVerity, "loading the table into lp-1")
                .with_source(std::io::Error::from(Errno::BUSY))
                .layer(2, "sha256:ab")
                .container("c1");
            let Error::RpcStatus(status) = rpc_error(&err) else {
                panic!("{kind:?} did not become an RPC status");
            };
            assert_eq!(status.code(), kind.code(), "{kind:?}");
            let os = std::io::Error::from(Errno::BUSY).to_string();
            assert_eq!(
                status.message(),
                format!(
                    "container c1: layer 2 (sha256:ab): dm-verity: loading the table into lp-1: {os}"
                )
            );
        }
    }
}

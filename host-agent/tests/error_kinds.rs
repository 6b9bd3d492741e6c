//! Every host error type has a kind (`layerpass_protocols::status::Kind`), and with it the
//! one ttrpc code and exit status both agents use: a table over every error type, with
//! the variants whose kind is a decision (input, missing, corrupt, I/O by errno).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io;
use std::path::PathBuf;

use layerpass::convert::{ImageConvertError, LayerConvertError};
use layerpass::erofs::ErofsError;
use layerpass::export::DiskError;
use layerpass::image::ImageError;
use layerpass::plan::PlanError;
use layerpass::verity::{BadBlock, VerityError};
use layerpass::vhost::VhostError;
use layerpass_protocols::status::{HasKind, Kind};
use layerpass_protocols::ttrpc::Code;

/// A host error: it has a kind and is an `Error` with its causes as `source()`.
trait HostError: HasKind + std::error::Error {}
impl<T: HasKind + std::error::Error> HostError for T {}

fn io_err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn p() -> PathBuf {
    PathBuf::from("/x")
}

#[test]
fn every_host_error_type_has_a_kind_and_so_a_code_and_an_exit_status() {
    let cases: Vec<(Box<dyn HostError>, Kind, &str)> = vec![
        // verity
        (
            Box::new(VerityError::Io {
                op: "open",
                path: p(),
                source: io_err(libc::ENOENT),
            }),
            Kind::NotFound,
            "verity: a missing file",
        ),
        (
            Box::new(VerityError::Mismatch(BadBlock::Data {
                index: 1,
                offset: 4096,
            })),
            Kind::FailedPrecondition,
            "verity: corrupt data",
        ),
        (
            Box::new(VerityError::SaltTooLong { len: 300 }),
            Kind::InvalidArgument,
            "verity: bad parameter",
        ),
        // erofs
        (
            Box::new(ErofsError::PathEscape {
                entry: "../x".into(),
            }),
            Kind::InvalidArgument,
            "erofs: hostile tar",
        ),
        (
            Box::new(ErofsError::Tar {
                after: "a".into(),
                source: io::Error::new(io::ErrorKind::InvalidData, "bad header"),
            }),
            Kind::InvalidArgument,
            "erofs: a tar that does not parse",
        ),
        (
            Box::new(ErofsError::LayerTooLarge { limit: 1 << 20 }),
            Kind::InvalidArgument,
            "erofs: layer over --max-layer-bytes",
        ),
        (
            Box::new(ErofsError::TooManyEntries { limit: 10 }),
            Kind::InvalidArgument,
            "erofs: layer over --max-entries",
        ),
        (
            Box::new(ErofsError::Io {
                op: "write",
                path: p(),
                source: io_err(libc::ENOSPC),
            }),
            Kind::Internal,
            "erofs: disk full",
        ),
        (
            Box::new(ErofsError::Verity(VerityError::ZeroDataBlocks)),
            Kind::InvalidArgument,
            "erofs: its verity error's kind",
        ),
        // image
        (
            Box::new(ImageError::MissingBlob {
                digest: "sha256:x".into(),
                location: "l".into(),
            }),
            Kind::NotFound,
            "image: missing blob",
        ),
        (
            Box::new(ImageError::BadDigest {
                what: "w".into(),
                value: "v".into(),
            }),
            Kind::InvalidArgument,
            "image: bad digest",
        ),
        (
            Box::new(ImageError::Io {
                op: "read",
                path: p(),
                source: io_err(libc::EACCES),
            }),
            Kind::PermissionDenied,
            "image: refused",
        ),
        // export
        (
            Box::new(DiskError::ReadOnly),
            Kind::PermissionDenied,
            "disk: read-only",
        ),
        (
            Box::new(DiskError::Empty { path: p() }),
            Kind::InvalidArgument,
            "disk: empty blob",
        ),
        (
            Box::new(DiskError::Io {
                op: "open",
                path: p(),
                source: io_err(libc::ENOENT),
            }),
            Kind::NotFound,
            "disk: missing blob",
        ),
        // vhost
        (
            Box::new(VhostError::Queues(9)),
            Kind::InvalidArgument,
            "vhost: queues",
        ),
        (
            Box::new(VhostError::Thread(io_err(libc::EAGAIN))),
            Kind::Internal,
            "vhost: no thread",
        ),
        (
            Box::new(VhostError::Stopped),
            Kind::Unavailable,
            "vhost: engine stopped",
        ),
        (
            Box::new(VhostError::Queue("x".into())),
            Kind::Internal,
            "vhost: queue set-up",
        ),
        // convert
        (
            Box::new(ImageConvertError::Layer {
                index: 1,
                digest: layerpass_types::Digest::sha256(&[0; 32]),
                source: Box::new(LayerConvertError::Blob(ImageError::DigestMismatch {
                    digest: "sha256:x".into(),
                    location: "l".into(),
                    actual: "sha256:y".into(),
                })),
            }),
            Kind::FailedPrecondition,
            "convert: a tampered layer blob",
        ),
        (
            Box::new(LayerConvertError::DiffIdMismatch {
                actual: "sha256:x".into(),
                expected: layerpass_types::Digest::sha256(&[0; 32]),
            }),
            Kind::FailedPrecondition,
            "convert: the config's diff ID is not the tar's",
        ),
        (
            Box::new(ImageConvertError::Image {
                path: p(),
                source: ImageError::Io {
                    op: "open",
                    path: p(),
                    source: io_err(libc::ENOENT),
                },
            }),
            Kind::NotFound,
            "convert: a missing image",
        ),
        (
            Box::new(LayerConvertError::Publish {
                from: p(),
                to: p(),
                source: io_err(libc::ENOSPC),
            }),
            Kind::Internal,
            "convert: cannot publish",
        ),
        // plan
        (
            Box::new(PlanError::NoVerity { path: p() }),
            Kind::FailedPrecondition,
            "plan: no sidecar",
        ),
        (
            Box::new(PlanError::NoLayers),
            Kind::InvalidArgument,
            "plan: no layers",
        ),
        (
            Box::new(PlanError::Disk(DiskError::Io {
                op: "stat",
                path: p(),
                source: io_err(libc::ENOENT),
            })),
            Kind::NotFound,
            "plan: its disk error's kind",
        ),
    ];
    let mut kinds = std::collections::HashSet::new();
    for (err, want, what) in &cases {
        let kind = err.kind();
        assert_eq!(kind, *want, "{what}");
        kinds.insert(kind);
        // the one mapping both agents report with
        assert_eq!(Kind::from_code(kind.code()), kind, "{what}");
        assert!(kind.exit_code() >= 10, "{what}");
        if kind == Kind::NotFound {
            assert_eq!(kind.code(), Code::NOT_FOUND);
        }
        // the cause is a source, not repeated in the message (main prints the chain once)
        if let Some(source) = err.source() {
            let own = err.to_string();
            assert!(
                !own.contains(&source.to_string()),
                "{what}: {own:?} repeats its source {source}"
            );
        }
    }
    assert!(kinds.len() >= 5, "the table covers most kinds: {kinds:?}");
}

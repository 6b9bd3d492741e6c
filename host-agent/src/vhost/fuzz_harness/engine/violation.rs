//! What the engine harness finds broken.

use std::io;
use std::path::PathBuf;

use super::guest::REPLY_TIMEOUT;
use super::submit::COMPLETION;

/// A broken invariant of the engine (or of the harness's model of it).
#[derive(Debug, thiserror::Error)]
pub enum EngineViolation {
    #[error("step {step} ({op} on disk {disk}): {source}")]
    Step {
        step: usize,
        op: &'static str,
        disk: usize,
        source: Box<EngineViolation>,
    },
    #[error("cannot connect to {socket}: {source}")]
    Connect { socket: PathBuf, source: io::Error },
    #[error("no answer to {what} within {REPLY_TIMEOUT:?}: the control thread is stuck")]
    NoReply { what: &'static str },
    #[error("the backend ended the connection on {what}, a well-formed message")]
    Dropped { what: &'static str },
    #[error("a malformed answer to {what}")]
    BadReply { what: &'static str },
    #[error(
        "{what} was {} where the harness predicted the opposite",
        if *accepted { "accepted" } else { "refused" }
    )]
    Acceptance { what: &'static str, accepted: bool },
    #[error("GET_QUEUE_NUM answered {got}, the disk has {want} queues")]
    QueueNum { got: u64, want: usize },
    #[error("GET_CONFIG: capacity {got:?} sectors, the disk has {want}")]
    Capacity { got: Option<u64>, want: u64 },
    #[error(
        "queue {queue}: {requests} requests not completed within {COMPLETION:?} (the used index moved by {moved})"
    )]
    NotCompleted {
        queue: usize,
        requests: usize,
        moved: u16,
    },
    #[error("queue {queue}: the used index moved by {moved} for {requests} requests")]
    TooManyCompleted {
        queue: usize,
        requests: usize,
        moved: u16,
    },
    #[error("queue {queue}: used element {at} has id {got}, the request's head is {want}")]
    UsedId {
        queue: usize,
        at: usize,
        got: u32,
        want: u16,
    },
    #[error("queue {queue}: request {at} completed with status {status:#x}")]
    Status { queue: usize, at: usize, status: u8 },
    #[error("queue {queue}: GET_VRING_BASE answered {got}, the queue had taken {want}")]
    VringBase { queue: usize, got: u32, want: u16 },
    #[error("disk {disk}: queue {queue} of a fresh frontend is not served")]
    NotServing { disk: usize, queue: usize },
    #[error("disk {disk}: a fresh frontend's read on queue {queue} got status {status:#x}")]
    HealthStatus {
        disk: usize,
        queue: usize,
        status: u8,
    },
    #[error(
        "disk {disk}: a fresh frontend read other bytes than the disk holds on queue {queue} (first at byte {first_difference})"
    )]
    HealthData {
        disk: usize,
        queue: usize,
        first_difference: usize,
    },
    #[error("after the run: {0}")]
    NotReleased(String),
}

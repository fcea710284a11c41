//! The control socket of a running mount (`HOME/control.sock`, mode 0600): typed requests and
//! replies, one compact JSON document per line (`serde_json` escapes every newline inside a
//! string, so a line is a message), each bounded in size. `server` serves a handler the
//! composition root gives it; `client` connects and asks, with a bounded wait.
//!
//! An exchange is one request, then any number of `Reply::Progress` lines (an audit's), then
//! one final reply, after which the server closes the connection. A request it cannot read gets
//! `Reply::Error` and a log line, never a panic.

pub mod client;
mod frame;
pub mod server;

use crate::app::report::{AuditReport, NodeRow, SnapshotReport, SnapshotRow, VaultStatus};
use serde::{Deserialize, Serialize};

/// Most bytes of a request line (paths are at most a few KiB).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Most bytes of a reply line (an audit lists every file at risk).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// What a client asks the running mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The vault's status with the mount's broker connection: `Reply::Status`.
    Status,
    /// The nodes view: `Reply::Nodes`.
    Nodes,
    /// Take a snapshot now: `Reply::Snapshot`.
    Snapshot,
    /// The retained snapshots: `Reply::Snapshots`.
    Snapshots,
    /// A read capability for the subtree at `path` (inside the mount, or from the vault's
    /// root): `Reply::Shared`.
    Share {
        /// The path as the user gave it (made absolute).
        path: String,
    },
    /// An audit pass over `path`: `Reply::Progress` lines, then `Reply::Audit`.
    Audit {
        /// The path as the user gave it (made absolute), or `/`.
        path: String,
        /// Which replicas it challenges.
        when: AuditWhen,
    },
}

/// Which replicas an audit challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditWhen {
    /// Those due (not verified within the audit interval), and those that failed.
    Due,
    /// All of them.
    Now,
}

/// What the running mount answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// To `Request::Status`.
    Status(Box<VaultStatus>),
    /// To `Request::Nodes`.
    Nodes(Vec<NodeRow>),
    /// To `Request::Snapshot`.
    Snapshot(SnapshotReport),
    /// To `Request::Snapshots`.
    Snapshots(Vec<SnapshotRow>),
    /// To `Request::Share`: the encoded capability.
    Shared {
        /// `Capability::encode`.
        capability: String,
    },
    /// An audit's progress: `done` of `total` challenges answered.
    Progress {
        /// Challenges answered.
        done: u64,
        /// Challenges sent.
        total: u64,
    },
    /// To `Request::Audit`, at its end.
    Audit(AuditReport),
    /// The request could not be served (malformed, or the vault failed it).
    Error {
        /// What went wrong, for the user.
        message: String,
    },
}

/// What can go wrong on the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket failed (nothing listens, the peer went away…).
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// A message longer than its bound.
    #[error("a control message longer than {max} bytes")]
    TooLong {
        /// The bound.
        max: usize,
    },
    /// A message that is not the JSON of a request or reply.
    #[error("a malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The peer closed the connection before the final reply.
    #[error("the mount closed the control connection before answering")]
    Closed,
    /// No final reply within the wait.
    #[error("the mount did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

#[cfg(test)]
mod tests;

//! One storage node of the memory fabric, with its fault: how its replies and acks reach the
//! owner (at once, late, damaged, or not at all).

use super::MemoryChunkStore;
use crate::app::node::NodeService;
use std::sync::Mutex;
use std::time::Duration;

/// What is wrong with one node (one fault at a time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeFault {
    /// Nothing: it answers at once.
    #[default]
    Healthy,
    /// Gone from the fabric: a request to it fails at once (no responders, as NATS says), it
    /// takes no store request, and it misses root records until it is back.
    Offline,
    /// Handles requests (its store changes) but every reply and ack is lost: the owner waits out
    /// its reply timeout.
    DropReplies,
    /// Its replies and acks arrive this much later (a reply later than the reply timeout is lost).
    DelayReplies(Duration),
    /// Flips a bit of every reply and ack it sends.
    CorruptReplies,
    /// A forger: acks every store (signed) without keeping the chunk, and answers nothing else.
    ForgesAcks,
}

/// A node service and what is wrong with it.
pub(super) struct MemoryNode {
    pub(super) svc: NodeService<MemoryChunkStore>,
    fault: Mutex<NodeFault>,
}

/// Flips the last bit of a message (inside its signature or ciphertext), so it still decodes
/// but no longer verifies.
fn flip(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(b) = bytes.last_mut() {
        *b ^= 1;
    }
    bytes
}

impl MemoryNode {
    /// A healthy node.
    pub(super) fn new(svc: NodeService<MemoryChunkStore>) -> Self {
        MemoryNode { svc, fault: Mutex::new(NodeFault::Healthy) }
    }

    pub(super) fn fault(&self) -> NodeFault {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the fault; returns the one it had.
    pub(super) fn set_fault(&self, fault: NodeFault) -> NodeFault {
        std::mem::replace(&mut *self.fault.lock().unwrap_or_else(|p| p.into_inner()), fault)
    }

    pub(super) fn online(&self) -> bool {
        self.fault() != NodeFault::Offline
    }

    /// Carries one reply to an owner waiting for it: `None` when it is lost (dropped, or later
    /// than `timeout`), after the owner waited `timeout` out.
    pub(super) async fn reply(&self, bytes: Vec<u8>, timeout: Duration) -> Option<Vec<u8>> {
        match self.fault() {
            NodeFault::DropReplies | NodeFault::ForgesAcks => {
                tokio::time::sleep(timeout).await;
                None
            }
            NodeFault::DelayReplies(d) if d >= timeout => {
                tokio::time::sleep(timeout).await;
                None
            }
            NodeFault::DelayReplies(d) => {
                tokio::time::sleep(d).await;
                Some(bytes)
            }
            NodeFault::CorruptReplies => Some(flip(bytes)),
            NodeFault::Healthy | NodeFault::Offline => Some(bytes),
        }
    }

    /// Carries a store ack through the ack stream, where nobody waits for one in particular:
    /// lost at once, late, or damaged.
    pub(super) async fn ack(&self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        match self.fault() {
            NodeFault::DropReplies => None,
            NodeFault::DelayReplies(d) => {
                tokio::time::sleep(d).await;
                Some(bytes)
            }
            NodeFault::CorruptReplies => Some(flip(bytes)),
            NodeFault::Healthy | NodeFault::Offline | NodeFault::ForgesAcks => Some(bytes),
        }
    }

    /// A reply the owner only listens for during `window` (it collects what comes, no timeout).
    pub(super) async fn heard_within(&self, bytes: Vec<u8>, window: Duration) -> Option<Vec<u8>> {
        match self.fault() {
            NodeFault::DelayReplies(d) if d >= window => None,
            NodeFault::DropReplies | NodeFault::ForgesAcks => None,
            _ => self.ack(bytes).await,
        }
    }

    /// When a batch of reply messages (to one request) arrives and as what, or `None` when it
    /// is lost.
    pub(super) fn scheduled(&self, msgs: Vec<Vec<u8>>) -> Option<(Duration, Vec<Vec<u8>>)> {
        match self.fault() {
            NodeFault::DropReplies | NodeFault::ForgesAcks => None,
            NodeFault::DelayReplies(d) => Some((d, msgs)),
            NodeFault::CorruptReplies => Some((Duration::ZERO, msgs.into_iter().map(flip).collect())),
            NodeFault::Healthy | NodeFault::Offline => Some((Duration::ZERO, msgs)),
        }
    }
}

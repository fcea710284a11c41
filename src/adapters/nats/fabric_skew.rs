//! The owner's view of its nodes' clocks on the NATS fabric (PROTOCOL.md 4.12): requests to a
//! node carry the owner's clock shifted by the node's measured offset, a signed "stale" answer
//! updates the offset (and the request is sent once more, or the get moves on at once), and gets
//! that waited out the reply timeout are counted.

use super::{node_subject, now_ms, NatsFabric};
use crate::domain::ids::{NodeId, RequestId};
use crate::domain::skew::{describe, Aim, SkewBook};
use crate::domain::wire::StaleReply;
use crate::ports::fabric::{ClockReport, FabricError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The window nodes accept timestamps in (a node's default policy).
fn node_window_ms() -> u64 {
    crate::app::node::NodePolicy::default().window_ms
}

/// What the owner knows of its nodes' clocks, and how often a targeted get timed out.
#[derive(Debug)]
pub(super) struct Clocks {
    book: Mutex<SkewBook>,
    /// The offset last logged per node, in whole seconds, so a change is logged once.
    logged: Mutex<HashMap<NodeId, i64>>,
    get_timeouts: AtomicU64,
}

impl Default for Clocks {
    fn default() -> Self {
        Clocks {
            book: Mutex::new(SkewBook::new(node_window_ms())),
            logged: Mutex::default(),
            get_timeouts: AtomicU64::new(0),
        }
    }
}

impl Clocks {
    fn book(&self) -> std::sync::MutexGuard<'_, SkewBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The timestamp for a request to `node` now (the broadcast gets the owner's own clock).
    pub(super) fn stamp(&self, node: &NodeId) -> u64 {
        self.book().stamp(node, now_ms())
    }

    /// Whether a get goes to `node` now.
    pub(super) fn aim(&self, node: &NodeId) -> Aim {
        self.book().aim(node, now_ms())
    }

    /// `node` answered well.
    pub(super) fn answered(&self, node: &NodeId) {
        self.book().answered(node);
    }

    /// A targeted get waited out the reply timeout.
    pub(super) fn timed_out(&self) {
        self.get_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// `payload`, if it is `node`'s signed stale answer to `request`, learnt from: the request
    /// was stamped and went out at `sent` (stamp, send time). Returns whether it was one.
    pub(super) fn stale(&self, node: &NodeId, request: &RequestId, sent: (u64, u64), payload: &[u8]) -> bool {
        let Some(stale) = StaleReply::from_for(payload, node, request) else { return false };
        let e = self.book().learn(*node, sent, now_ms(), stale.node_ms);
        let secs = (e.offset_ms + 500).div_euclid(1000);
        let before = self.logged.lock().unwrap_or_else(|p| p.into_inner()).insert(*node, secs);
        if before != Some(secs) {
            tracing::warn!(
                node = ?node,
                offset_ms = e.offset_ms,
                "{}; requests to it now carry its time (fix that box's NTP)",
                describe(node, e.offset_ms)
            );
        }
        true
    }

    /// Skewed nodes and get timeouts, for `quloud status`.
    pub(super) fn report(&self) -> ClockReport {
        ClockReport { skewed: self.book().skewed(), get_timeouts: self.get_timeouts.load(Ordering::Relaxed) }
    }
}

impl NatsFabric {
    /// Sends the request `build` makes for a timestamp to `node`'s `op` subject; when the node
    /// answers "stale", learns its clock and sends a request stamped anew, once (a second stale
    /// answer is a timeout). Returns the answer and what `build` returned with its request.
    pub(super) async fn ask<T>(
        &self,
        node: NodeId,
        op: &str,
        build: impl Fn(u64) -> (Vec<u8>, RequestId, T),
    ) -> Result<(bytes::Bytes, T), FabricError> {
        for _ in 0..2 {
            let sent = now_ms();
            let stamp = self.clocks.stamp(&node);
            let (payload, request, built) = build(stamp);
            let answer = self.request(node_subject(&node, op), payload, node).await?;
            if !self.clocks.stale(&node, &request, (stamp, sent), &answer) {
                self.clocks.answered(&node);
                return Ok((answer, built));
            }
        }
        // Stale twice: the node's clock moves faster than it can be measured.
        Err(FabricError::Timeout(node))
    }
}

//! Clock skew between the owner and its storage nodes (PROTOCOL.md 4.12, SECURITY.md "Clock
//! skew"): per-node offsets learnt from signed "stale" answers, the timestamp a request to a node
//! carries, and whether gets are aimed at the node at all.
//!
//! A node that answers "stale: my clock is T" to a request sent at `s` and answered by `r` (owner
//! clock) is `T − (s + r) / 2` ahead, give or take `(r − s) / 2`. Requests to it are then stamped
//! with the owner's clock shifted by that offset, so they land inside the node's own window and
//! its replay memory works as for any other request.

use crate::domain::ids::NodeId;
use std::collections::HashMap;

/// Smallest offset worth naming (smaller ones are measurement noise of a fixed clock).
pub const REPORT_MS: u64 = 1_000;
/// How long gets avoid a node whose offset could not be compensated, before trying it again.
pub const RECHECK_MS: u64 = 60_000;

/// What the owner knows of one node's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Node clock minus owner clock, ms.
    pub offset_ms: i64,
    /// Half the round trip of the measurement: the offset is right within this.
    pub error_ms: u64,
    /// When it was measured (owner clock).
    pub at_ms: u64,
    /// Stale answers in a row with no good answer between: more than one means the shifted
    /// stamps missed too (a clock that jumps, or a round trip too slow to measure it).
    pub misses: u32,
}

/// Whether a get is sent to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aim {
    /// Send it, stamped with [`SkewBook::stamp`].
    Node,
    /// Go straight to the next replica (or the broadcast): this node's clock cannot be matched now.
    Elsewhere,
}

/// Per-node clock offsets as the owner measured them.
#[derive(Debug)]
pub struct SkewBook {
    window_ms: u64,
    nodes: HashMap<NodeId, Estimate>,
}

/// `now` moved by `offset`, saturating.
pub fn shifted(now_ms: u64, offset_ms: i64) -> u64 {
    now_ms.saturating_add_signed(offset_ms)
}

impl SkewBook {
    /// A book for nodes that accept timestamps within `window_ms` of their clock.
    pub fn new(window_ms: u64) -> Self {
        SkewBook { window_ms, nodes: HashMap::new() }
    }

    /// The timestamp for a request to `node` sent at owner time `now_ms`.
    pub fn stamp(&self, node: &NodeId, now_ms: u64) -> u64 {
        shifted(now_ms, self.nodes.get(node).map_or(0, |e| e.offset_ms))
    }

    /// What is known of `node`'s clock.
    pub fn estimate(&self, node: &NodeId) -> Option<Estimate> {
        self.nodes.get(node).copied()
    }

    /// Records a stale answer from `node` to a request stamped `stamped_ms`, sent at `sent_ms`
    /// and answered at `received_ms` (owner clock), saying the node's clock read `node_ms`.
    /// Returns the new estimate. Only a request already stamped with the estimate held counts
    /// as a second miss (answers to requests sent before the first one arrived do not).
    pub fn learn(
        &mut self,
        node: NodeId,
        (stamped_ms, sent_ms): (u64, u64),
        received_ms: u64,
        node_ms: u64,
    ) -> Estimate {
        let received_ms = received_ms.max(sent_ms);
        let mid = sent_ms + (received_ms - sent_ms) / 2;
        let offset_ms = (node_ms as i128 - mid as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let used = stamped_ms as i128 - sent_ms as i128;
        let misses = match self.nodes.get(&node) {
            Some(e) if (used - e.offset_ms as i128).abs() <= REPORT_MS as i128 => e.misses + 1,
            _ => 1,
        };
        let e = Estimate { offset_ms, error_ms: (received_ms - sent_ms) / 2, at_ms: received_ms, misses };
        self.nodes.insert(node, e);
        e
    }

    /// Records a good answer from `node`: its shifted stamps work.
    pub fn answered(&mut self, node: &NodeId) {
        if let Some(e) = self.nodes.get_mut(node) {
            e.misses = 0;
        }
    }

    /// Whether a get at owner time `now_ms` should go to `node`. A node is avoided for
    /// [`RECHECK_MS`] after a stale answer that shifting cannot fix: a second one in a row, or
    /// one measured too roughly (error at least half the window) to stamp by.
    pub fn aim(&self, node: &NodeId, now_ms: u64) -> Aim {
        match self.nodes.get(node) {
            Some(e)
                if (e.misses >= 2 || e.error_ms.saturating_mul(2) >= self.window_ms)
                    && now_ms.saturating_sub(e.at_ms) < RECHECK_MS =>
            {
                Aim::Elsewhere
            }
            _ => Aim::Node,
        }
    }

    /// Nodes whose clock is off by at least [`REPORT_MS`], with their offsets, by node id.
    pub fn skewed(&self) -> Vec<(NodeId, i64)> {
        let mut v: Vec<(NodeId, i64)> = self
            .nodes
            .iter()
            .filter(|(_, e)| e.offset_ms.unsigned_abs() >= REPORT_MS)
            .map(|(n, e)| (*n, e.offset_ms))
            .collect();
        v.sort();
        v
    }
}

/// "node X's clock is 600 s ahead" (seconds rounded).
pub fn describe(node: &NodeId, offset_ms: i64) -> String {
    let secs = (offset_ms.unsigned_abs() + 500) / 1000;
    let way = if offset_ms >= 0 { "ahead" } else { "behind" };
    format!("node {node:?}'s clock is {secs} s {way}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: NodeId = NodeId([5; 32]);
    const M: NodeId = NodeId([6; 32]);

    #[test]
    fn the_offset_is_the_node_clock_minus_the_round_trip_midpoint() {
        let mut b = SkewBook::new(120_000);
        let e = b.learn(N, (1_000_000, 1_000_000), 1_000_040, 1_600_020);
        assert_eq!((e.offset_ms, e.error_ms, e.misses), (600_000, 20, 1));
        assert_eq!(b.stamp(&N, 2_000_000), 2_600_000);
        assert_eq!(b.stamp(&M, 2_000_000), 2_000_000, "an unmeasured node gets the owner's clock");
        let e = b.learn(M, (1_000_000, 1_000_000), 1_000_040, 400_020);
        assert_eq!(e.offset_ms, -600_000);
        assert_eq!(b.stamp(&M, 1_000_000), 400_000);
        // A reply seen "before" it was sent (the owner's clock stepped back) is not a negative trip.
        assert_eq!(b.learn(M, (1_000, 1_000), 900, 2_000).error_ms, 0);
    }

    #[test]
    fn gets_go_elsewhere_only_while_shifting_cannot_help() {
        let mut b = SkewBook::new(120_000);
        assert_eq!(b.aim(&N, 0), Aim::Node, "unmeasured");
        b.learn(N, (1_000, 1_000), 1_040, 601_020);
        assert_eq!(b.aim(&N, 1_040), Aim::Node, "one stale answer: shifted stamps will do");
        b.learn(N, (1_010, 1_010), 1_050, 601_030);
        assert_eq!(b.aim(&N, 1_050), Aim::Node, "an answer to a request sent before the first came");
        b.learn(N, (602_000, 2_000), 2_040, 902_020);
        assert_eq!(b.aim(&N, 2_040), Aim::Elsewhere, "stale again although shifted: the clock jumps");
        assert_eq!(b.aim(&N, 2_040 + RECHECK_MS), Aim::Node, "tried again after a while");
        b.answered(&N);
        assert_eq!(b.aim(&N, 2_041), Aim::Node, "a good answer clears it");
        b.answered(&N);
        b.learn(M, (0, 0), 130_000, 700_000);
        assert_eq!(b.aim(&M, 130_000), Aim::Elsewhere, "measured too roughly to stamp by");
    }

    #[test]
    fn only_offsets_worth_naming_are_reported_rounded_to_seconds() {
        let mut b = SkewBook::new(120_000);
        b.learn(N, (1_000, 1_000), 1_000, 601_400);
        b.learn(M, (1_000, 1_000), 1_000, 1_300);
        assert_eq!(b.skewed(), vec![(N, 600_400)]);
        assert!(describe(&N, 600_400).ends_with("'s clock is 600 s ahead"), "{}", describe(&N, 600_400));
        assert!(describe(&N, -89_600).ends_with("'s clock is 90 s behind"));
    }
}

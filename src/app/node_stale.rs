//! The storage node's signed "stale" answer (PROTOCOL.md 4.12): a targeted request dropped for
//! being outside the window gets "stale: my clock is T" instead of silence, so its owner learns
//! the offset at once. Rate-limited per request source; the broadcast stays silent.

use super::NodeService;
use crate::domain::ids::{NodeId, RequestId};
use crate::domain::wire::{
    peek_kind, AuditBatch, AuditRequest, ControlRequest, Kind, ProvenRequest, StaleReply,
};
use crate::ports::chunk_store::ChunkStore;
use std::sync::atomic::Ordering;

/// Stale answers per second each request source may get (burst [`STALE_BURST`]).
pub const STALE_PER_SECOND: u64 = 4;
/// Stale answers a source may get at once.
pub const STALE_BURST: u64 = 16;

/// Who a request is for, its id and its timestamp, whatever its kind; `None` if it does not decode.
fn stamp_of(bytes: &[u8]) -> Option<(NodeId, RequestId, u64)> {
    match peek_kind(bytes)? {
        k if k == Kind::Proven as u8 => {
            ProvenRequest::decode(bytes).ok().map(|r| (r.target, r.request_id, r.timestamp_ms))
        }
        k if k == Kind::Control as u8 => {
            ControlRequest::decode(bytes).ok().map(|r| (r.target, r.request_id, r.timestamp_ms))
        }
        k if k == Kind::AuditBatch as u8 => {
            let b = AuditBatch::decode(bytes).ok()?;
            b.0.first().map(|r| (r.target, r.request_id, r.timestamp_ms))
        }
        _ => AuditRequest::decode(bytes).ok().map(|r| (r.target, r.request_id, r.timestamp_ms)),
    }
}

impl<S: ChunkStore> NodeService<S> {
    /// The answer to a request on this node's own subject that was dropped: a signed "stale: my
    /// clock is `now_ms`" when it was addressed to this node and outside the window, and the
    /// source is within its stale-answer rate; `None` otherwise (the request stays unanswered).
    /// Only the node's clock is revealed: the answer does not depend on what the node holds.
    pub fn stale_answer(&self, source: &[u8], bytes: &[u8], now_ms: u64) -> Option<StaleReply> {
        let (target, request_id, ts) = stamp_of(bytes)?;
        if target != self.id.id() {
            return None;
        }
        let stale = self.replay.lock().unwrap_or_else(|p| p.into_inner()).timely(ts, now_ms).is_err();
        if !stale || !self.stale_rate.lock().unwrap_or_else(|p| p.into_inner()).admit(source, 1, now_ms) {
            return None;
        }
        self.stats.stale_answers.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            skew_ms = ts as i64 - now_ms as i64,
            "answered a stale request with this node's clock"
        );
        Some(StaleReply::sign(&self.id, request_id, now_ms))
    }
}

//! The node's signed "stale" answer (PROTOCOL.md 4.12): a targeted request fell outside the node's
//! freshness window, and this is the node's clock, so the owner learns the offset at once.

use super::{Kind, WireError, R, W};
use crate::domain::identity::{verify_signature, NodeIdentity, SIGNATURE_LEN};
use crate::domain::ids::{NodeId, RequestId};

/// Length of an encoded [`StaleReply`].
pub const STALE_REPLY_LEN: usize = 2 + 32 + 16 + 8 + SIGNATURE_LEN;

/// "Your request was outside my window; my clock reads `node_ms`", signed by the node and bound
/// to the request it answers. It reveals nothing but the node's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleReply {
    /// The node answering.
    pub node: NodeId,
    /// The request found stale.
    pub request_id: RequestId,
    /// The node's clock when it judged the request, Unix milliseconds.
    pub node_ms: u64,
    /// Signature over all of the above.
    pub signature: [u8; SIGNATURE_LEN],
}

impl StaleReply {
    fn body(node: &NodeId, request_id: &RequestId, node_ms: u64) -> W {
        let mut w = W::new(Kind::Stale, STALE_REPLY_LEN);
        w.raw(&node.0).raw(&request_id.0).u64(node_ms);
        w
    }

    /// Creates and signs the answer to request `request_id`, judged at `node_ms`.
    pub fn sign(id: &NodeIdentity, request_id: RequestId, node_ms: u64) -> Self {
        let node = id.id();
        let signature = id.sign(&Self::body(&node, &request_id, node_ms).0);
        StaleReply { node, request_id, node_ms, signature }
    }

    /// Whether the node's signature covers these fields.
    pub fn verify(&self) -> bool {
        verify_signature(
            &self.node,
            &Self::body(&self.node, &self.request_id, self.node_ms).0,
            &self.signature,
        )
    }

    /// Encodes the answer.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Self::body(&self.node, &self.request_id, self.node_ms);
        w.raw(&self.signature);
        w.0
    }

    /// Decodes an answer (signature checked with `verify`).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = R::open(buf, Kind::Stale)?;
        let node = NodeId(r.arr()?);
        let request_id = RequestId(r.arr()?);
        let node_ms = r.u64()?;
        let signature = r.arr()?;
        r.finish()?;
        Ok(StaleReply { node, request_id, node_ms, signature })
    }

    /// The answer in `buf` if it is a stale answer from `node` to `request_id` with a valid
    /// signature; `None` for anything else (another kind, another node or request, forged).
    pub fn from_for(buf: &[u8], node: &NodeId, request_id: &RequestId) -> Option<Self> {
        let r = Self::decode(buf).ok()?;
        (r.node == *node && r.request_id == *request_id && r.verify()).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::GetReply;

    fn identity() -> NodeIdentity {
        NodeIdentity::from_bytes(&[7; 64])
    }

    #[test]
    fn a_stale_reply_round_trips_and_verifies() {
        let id = identity();
        let r = StaleReply::sign(&id, RequestId([3; 16]), 1_700_000_600_000);
        let bytes = r.encode();
        assert_eq!(bytes.len(), STALE_REPLY_LEN);
        assert_eq!(&bytes[..2], &[1, Kind::Stale as u8]);
        let back = StaleReply::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.verify());
        assert_eq!(StaleReply::from_for(&bytes, &id.id(), &RequestId([3; 16])), Some(r));
    }

    #[test]
    fn a_stale_reply_for_another_request_node_or_clock_is_refused() {
        let id = identity();
        let r = StaleReply::sign(&id, RequestId([3; 16]), 5_000);
        let bytes = r.encode();
        assert_eq!(StaleReply::from_for(&bytes, &id.id(), &RequestId([4; 16])), None, "other request");
        let other = NodeIdentity::from_bytes(&[8; 64]).id();
        assert_eq!(StaleReply::from_for(&bytes, &other, &RequestId([3; 16])), None, "other node");
        let mut forged = bytes.clone();
        forged[2 + 32 + 16] ^= 1;
        assert_eq!(StaleReply::from_for(&forged, &id.id(), &RequestId([3; 16])), None, "altered clock");
    }

    #[test]
    fn malformed_stale_replies_are_errors_and_other_kinds_are_not_stale() {
        let bytes = StaleReply::sign(&identity(), RequestId([3; 16]), 5_000).encode();
        for n in 0..bytes.len() {
            assert!(StaleReply::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(StaleReply::decode(&long), Err(WireError::Trailing(1)));
        // An older owner reading it as a get reply gets an error, not a chunk.
        assert_eq!(GetReply::decode(&bytes).unwrap_err(), WireError::Kind(Kind::Stale as u8));
    }
}

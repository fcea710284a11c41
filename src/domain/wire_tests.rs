//! Round trips and hostile-input tests for every wire decoder.

use super::*;
use crate::domain::proof::{prove, ProofSecret};

fn secret() -> ProofSecret {
    ProofSecret::from_seed(&[5; 32])
}

fn store() -> StoreRequest {
    StoreRequest::for_body(AckToken([1; 16]), b"ct", 2, secret().commitment(), 123)
}

fn proven() -> ProvenRequest {
    let mut req = ProvenRequest {
        purpose: Purpose::Renew,
        request_id: RequestId([3; 16]),
        timestamp_ms: 99,
        target: NodeId([4; 32]),
        lease_expiry_ms: 1000,
        items: vec![],
    };
    for a in [Addr([7; 32]), Addr([8; 32])] {
        let proof = prove(&secret(), &req.context(&a));
        req.items.push(ProvenItem { addr: a, proof });
    }
    req
}

fn audit_reply() -> AuditReply {
    let leaf = LeafProof { index: 3, leaf: vec![9; 100], path: vec![[1; 32], [2; 32]] };
    AuditReply::sign(&NodeIdentity::generate(), Addr([1; 32]), [2; 32], Status::Ok, vec![leaf])
}

fn audit_request() -> AuditRequest {
    let mut req = AuditRequest {
        request_id: RequestId([1; 16]),
        timestamp_ms: 5,
        target: NodeId([2; 32]),
        addr: Addr([3; 32]),
        proof: prove(
            &secret(),
            &ProofContext {
                purpose: Purpose::Audit,
                addr: [0; 32],
                target: [0; 32],
                timestamp_ms: 0,
                request_id: [0; 16],
            },
        ),
        seed: [4; 32],
        leaves: 4,
    };
    req.proof = prove(&secret(), &req.context());
    req
}

/// All encodings of one sample per message kind, with a decoder that reports success.
/// A decoder that reports whether it accepted the bytes.
type Accepts = fn(&[u8]) -> bool;

fn samples() -> Vec<(Vec<u8>, Accepts)> {
    let id = NodeIdentity::generate();
    vec![
        (store().encode(), |b| StoreRequest::decode(b).is_ok()),
        (StoreAck::sign(&id, Addr([1; 32]), &secret().commitment(), 1, 2, 3).encode(), |b| {
            StoreAck::decode(b).is_ok()
        }),
        (proven().encode(), |b| ProvenRequest::decode(b).is_ok()),
        (
            GetReply { node: id.id(), addr: Addr([1; 32]), status: Status::Ok, ciphertext: vec![1, 2, 3] }
                .encode(),
            |b| GetReply::decode(b).is_ok(),
        ),
        (
            ControlReply::sign(&id, RequestId([1; 16]), vec![(Addr([1; 32]), Status::NotFound)]).encode(),
            |b| ControlReply::decode(b).is_ok(),
        ),
        (audit_request().encode(), |b| AuditRequest::decode(b).is_ok()),
        (audit_reply().encode(), |b| AuditReply::decode(b).is_ok()),
        (AuditBatch(vec![audit_request(), audit_request()]).encode(), |b| AuditBatch::decode(b).is_ok()),
        (AuditBatchReply(vec![audit_reply(), audit_reply()]).encode(), |b| {
            AuditBatchReply::decode(b).is_ok()
        }),
    ]
}

#[test]
fn audit_batches_round_trip_and_are_bounded() {
    let batch = AuditBatch(vec![audit_request(); 3]);
    assert_eq!(AuditBatch::decode(&batch.encode()).unwrap(), batch);
    let replies = AuditBatchReply(vec![audit_reply(); 2]);
    assert_eq!(AuditBatchReply::decode(&replies.encode()).unwrap(), replies);
    // Empty, too many challenges, too many leaves in total, or a huge inner length: refused.
    assert!(AuditBatch::decode(&AuditBatch(vec![]).encode()).is_err());
    let too_many = AuditBatch(vec![audit_request(); MAX_AUDIT_BATCH + 1]).encode();
    assert!(matches!(AuditBatch::decode(&too_many), Err(WireError::TooLarge { .. })));
    let mut greedy = audit_request();
    greedy.leaves = 16;
    let greedy = AuditBatch(vec![greedy; 17]).encode();
    assert!(matches!(AuditBatch::decode(&greedy), Err(WireError::TooLarge { .. })));
    let mut huge = batch.encode();
    huge[3..7].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(AuditBatch::decode(&huge), Err(WireError::TooLarge { .. })));
}

#[test]
fn round_trips() {
    let s = store();
    assert_eq!(StoreRequest::decode(&s.encode()).unwrap(), s);
    assert_eq!(s.encode().len(), STORE_REQUEST_LEN);
    assert_eq!(s.verify(b"ct").map(|v| v.bytes()), Some(&b"ct"[..]));
    assert!(s.verify(b"cT").is_none() && s.verify(b"ct\0").is_none() && s.verify(b"").is_none());
    let p = proven();
    assert_eq!(ProvenRequest::decode(&p.encode()).unwrap(), p);
    let a = audit_reply();
    let back = AuditReply::decode(&a.encode()).unwrap();
    assert_eq!(back, a);
    assert!(back.verify_signature());
    let q = audit_request();
    assert_eq!(AuditRequest::decode(&q.encode()).unwrap(), q);
}

#[test]
fn signatures_cover_every_field() {
    let id = NodeIdentity::generate();
    let c = secret().commitment();
    let ack = StoreAck::sign(&id, Addr([1; 32]), &c, 1, 2, 3);
    assert!(ack.verify(&c));
    assert!(!ack.verify(&ProofSecret::from_seed(&[6; 32]).commitment()), "commitment not covered");
    for tweak in 0..5 {
        let mut bad = ack.clone();
        match tweak {
            0 => bad.addr.0[0] ^= 1,
            1 => bad.slot ^= 1,
            2 => bad.lease_expiry_ms += 1,
            3 => bad.signed_at_ms += 1,
            _ => bad.node = NodeIdentity::generate().id(),
        }
        assert!(!bad.verify(&c), "tweak {tweak} not covered by the signature");
    }
    let mut reply = audit_reply();
    reply.proofs[0].leaf[0] ^= 1;
    assert!(!reply.verify_signature());
    let mut ctl = ControlReply::sign(&id, RequestId([1; 16]), vec![(Addr([1; 32]), Status::Ok)]);
    assert!(ctl.verify());
    ctl.results[0].1 = Status::NotFound;
    assert!(!ctl.verify());
}

#[test]
fn request_binding_covers_lease_and_seed() {
    let p = proven();
    let mut other = p.clone();
    other.lease_expiry_ms += 1;
    assert_ne!(p.context(&Addr([7; 32])), other.context(&Addr([7; 32])));
    let a = audit_request();
    let mut b = a.clone();
    b.seed[0] ^= 1;
    assert_ne!(a.context(), b.context());
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    for (bytes, ok) in samples() {
        assert!(ok(&bytes));
        for cut in 0..bytes.len() {
            assert!(!ok(&bytes[..cut]), "accepted a message cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(!ok(&longer), "accepted trailing bytes");
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert!(!ok(&wrong_version), "accepted version 2");
    }
}

#[test]
fn oversized_lengths_are_rejected_without_allocating() {
    let mut b = store().encode();
    let len_at = b.len() - 4;
    b[len_at..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(StoreRequest::decode(&b), Err(WireError::TooLarge { .. })));
    b[len_at..].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(StoreRequest::decode(&b), Err(WireError::Invalid(_))));
    let mut p = proven().encode();
    let n_at = 2 + 1 + 16 + 8 + 32 + 8;
    p[n_at..n_at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(ProvenRequest::decode(&p), Err(WireError::TooLarge { .. })));
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (bytes, ok) in samples() {
        for _ in 0..3000 {
            let mut m = bytes.clone();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() as usize) % m.len();
                m[i] = rnd() as u8;
            }
            let _ = ok(&m);
            let len = (rnd() % 300) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let _ = ok(&junk);
        }
    }
}

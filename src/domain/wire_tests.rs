//! Round trips and hostile-input tests for every wire decoder.

use super::*;
use crate::domain::audit::LeafProof;
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
        control: None,
    };
    req.proof = prove(&secret(), &req.context());
    req
}

/// The owner's secret of a chunk: read secret with a control secret attached.
fn owner_secret() -> ProofSecret {
    secret().with_control(ProofSecret::from_seed(&[6; 32]))
}

fn controlled_store() -> StoreRequest {
    store().with_control(owner_secret().control_commitment())
}

fn control_request() -> ControlRequest {
    let items = [(Addr([7; 32]), owner_secret()), (Addr([8; 32]), owner_secret())];
    ControlRequest::build(Purpose::Renew, NodeId([4; 32]), 99, 1000, &items).expect("owner secrets")
}

fn controlled_audit() -> AuditRequest {
    AuditRequest::build(&owner_secret(), NodeId([2; 32]), Addr([3; 32]), [4; 32], 4, 5)
}

fn bound_audit_reply() -> AuditReply {
    let leaf = LeafProof { index: 3, leaf: vec![9; 100], path: vec![[1; 32], [2; 32]] };
    let bound = Some(request_hash(&controlled_audit().encode()));
    AuditReply::sign_bound(&NodeIdentity::generate(), (Addr([3; 32]), [4; 32], bound), Status::Ok, vec![leaf])
}

fn bound_control_reply(id: &NodeIdentity) -> ControlReply {
    let req = control_request();
    let results = vec![(Addr([7; 32]), Status::Ok), (Addr([8; 32]), Status::NotFound)];
    ControlReply::sign_bound(id, req.request_id, Some(request_hash(&req.encode())), results)
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
        (controlled_store().encode(), |b| StoreRequest::decode(b).is_ok()),
        (control_request().encode(), |b| ControlRequest::decode(b).is_ok()),
        (controlled_audit().encode(), |b| AuditRequest::decode(b).is_ok()),
        (bound_audit_reply().encode(), |b| AuditReply::decode(b).is_ok()),
        (bound_control_reply(&id).encode(), |b| ControlReply::decode(b).is_ok()),
        (AuditBatch(vec![audit_request(), controlled_audit()]).encode(), |b| AuditBatch::decode(b).is_ok()),
        (AuditBatchReply(vec![audit_reply(), bound_audit_reply()]).encode(), |b| {
            AuditBatchReply::decode(b).is_ok()
        }),
    ]
}

/// The messages that carry control commitments and bind replies round-trip, keep their own kinds,
/// and the older kinds still decode as before (with no control commitment, no binding).
#[test]
fn control_and_bound_messages_round_trip_beside_the_older_kinds() {
    let s = controlled_store();
    assert_eq!(peek_kind(&s.encode()), Some(Kind::StoreControlled as u8));
    assert_eq!(StoreRequest::decode(&s.encode()).unwrap(), s);
    assert_eq!(s.encode().len(), STORE_REQUEST_LEN + COMMITMENT_LEN);
    assert_eq!(peek_kind(&store().encode()), Some(Kind::Store as u8));
    assert_eq!(StoreRequest::decode(&store().encode()).unwrap().control, None);
    // Q equal to P would let the read secret control the chunk: refused.
    let same = store().with_control(Some(secret().commitment()));
    assert!(matches!(StoreRequest::decode(&same.encode()), Err(WireError::Invalid(_))));

    let c = control_request();
    assert_eq!(ControlRequest::decode(&c.encode()).unwrap(), c);
    assert!(c.encode().len() <= MAX_REQUEST);
    let full = vec![(Addr([1; 32]), owner_secret()); MAX_CONTROL_ITEMS];
    let full = ControlRequest::build(Purpose::Delete, NodeId([4; 32]), 1, 0, &full).unwrap().encode();
    assert!(full.len() <= MAX_REQUEST, "{} bytes", full.len());
    assert!(
        ControlRequest::build(Purpose::Renew, NodeId([4; 32]), 1, 0, &[(Addr([1; 32]), secret())]).is_none()
    );
    let mut get = c.encode();
    get[2] = Purpose::Get as u8;
    assert!(ControlRequest::decode(&get).is_err(), "a control request never gets");

    let q = controlled_audit();
    assert_eq!(peek_kind(&q.encode()), Some(Kind::AuditControlled as u8));
    assert_eq!(AuditRequest::decode(&q.encode()).unwrap(), q);
    let old = audit_request();
    assert!(old.control.is_none());
    assert_eq!(AuditRequest::decode(&old.encode()).unwrap(), old);

    let r = bound_audit_reply();
    assert_eq!(AuditReply::decode(&r.encode()).unwrap(), r);
    assert!(r.verify_signature());
    assert_eq!(AuditReply::decode(&audit_reply().encode()).unwrap().request, None);
    let id = NodeIdentity::generate();
    let r = bound_control_reply(&id);
    assert_eq!(ControlReply::decode(&r.encode()).unwrap(), r);
    assert!(r.verify());
}

/// Issue 24 item 3: a signed reply covers the hash of the request it answers. The same
/// answer for another request (say, a copy of the owner's with a garbage proof) does not verify
/// as the answer to the owner's, and a bound reply is never a valid unbound one.
#[test]
fn bound_replies_cover_the_request_hash() {
    let id = NodeIdentity::generate();
    let mut ctl = bound_control_reply(&id);
    ctl.request = Some([0; 32]);
    assert!(!ctl.verify(), "request hash not covered");
    let mut ctl = bound_control_reply(&id);
    ctl.request = None;
    assert!(!ctl.verify(), "a bound reply passed for an unbound one");
    let mut r = bound_audit_reply();
    r.request.as_mut().unwrap()[0] ^= 1;
    assert!(!r.verify_signature());
    let mut r = bound_audit_reply();
    r.request = None;
    assert!(!r.verify_signature());
    // Changing only a proof changes the request hash.
    let a = controlled_audit();
    let mut b = a.clone();
    b.proof = prove(&secret(), &b.context());
    assert_ne!(a, b);
    assert_ne!(request_hash(&a.encode()), request_hash(&b.encode()));
}

/// A store ack for a chunk held with a control commitment covers it: it never passes for an ack
/// of the chunk without Q, nor with another Q.
#[test]
fn store_acks_cover_the_control_commitment() {
    let id = NodeIdentity::generate();
    let (p, q) = (secret().commitment(), owner_secret().control_commitment().unwrap());
    let ack = StoreAck::sign_held(&id, Addr([1; 32]), (&p, Some(&q)), 1, 2, 3);
    assert!(ack.verify_held(&p, Some(&q)));
    assert!(!ack.verify(&p));
    assert!(!ack.verify_held(&p, Some(&ProofSecret::from_seed(&[9; 32]).commitment())));
    assert!(!StoreAck::sign(&id, Addr([1; 32]), &p, 1, 2, 3).verify_held(&p, Some(&q)));
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

/// The bytes each node signature covers, built here field by field exactly as docs/PROTOCOL.md
/// writes them (4.2 store acks, 4.5 control replies): a change of either the code or the layout
/// documented there fails this test.
#[test]
fn signed_layouts_are_the_ones_protocol_md_documents() {
    let id = NodeIdentity::from_bytes(&[9; 64]);
    let node = id.id();
    let (p, q) = (secret().commitment(), ProofSecret::from_seed(&[6; 32]).commitment());
    let addr = Addr([3; 32]);
    let tail = |v: &mut Vec<u8>| {
        v.push(2);
        v.extend_from_slice(&0x1122_3344_u64.to_le_bytes());
        v.extend_from_slice(&0x5566_u64.to_le_bytes());
    };
    // "quloud v1 store ack" ‖ node id ‖ addr ‖ P ‖ slot ‖ lease_expiry_ms ‖ signed_at_ms
    let mut v1 = b"quloud v1 store ack".to_vec();
    for part in [&node.0[..], &addr.0, &p.to_bytes()] {
        v1.extend_from_slice(part);
    }
    tail(&mut v1);
    assert_eq!(v1.len(), 19 + 32 + 32 + 64 + 1 + 8 + 8);
    let ack = StoreAck::sign(&id, addr, &p, 2, 0x1122_3344, 0x5566);
    assert!(verify_signature(&node, &v1, &ack.signature), "v1 store ack layout");
    // "quloud v2 store ack" ‖ node id ‖ addr ‖ P ‖ Q ‖ slot ‖ lease_expiry_ms ‖ signed_at_ms
    let mut v2 = b"quloud v2 store ack".to_vec();
    for part in [&node.0[..], &addr.0, &p.to_bytes(), &q.to_bytes()] {
        v2.extend_from_slice(part);
    }
    tail(&mut v2);
    let ack = StoreAck::sign_held(&id, addr, (&p, Some(&q)), 2, 0x1122_3344, 0x5566);
    assert!(verify_signature(&node, &v2, &ack.signature), "v2 store ack layout");

    // Kind 7: version ‖ kind ‖ node id ‖ request_id ‖ n (2) ‖ n × (addr ‖ status), then the signature.
    let request_id = RequestId([5; 16]);
    let results = vec![(addr, Status::Ok), (Addr([4; 32]), Status::NotFound)];
    let mut body = vec![1, 7];
    body.extend_from_slice(&node.0);
    body.extend_from_slice(&request_id.0);
    body.extend_from_slice(&2u16.to_le_bytes());
    for (a, s) in &results {
        body.extend_from_slice(&a.0);
        body.push(*s as u8);
    }
    let reply = ControlReply::sign(&id, request_id, results.clone());
    let enc = reply.encode();
    assert_eq!(&enc[..52 + 66], &body[..], "kind 7 layout");
    assert!(verify_signature(&node, &body, &reply.signature), "kind 7 signed bytes");
    // Kind 14: the request hash after the request id; the signature covers it.
    let hash = [8u8; 32];
    let mut bound = vec![1, 14];
    bound.extend_from_slice(&body[2..50]);
    bound.extend_from_slice(&hash);
    bound.extend_from_slice(&body[50..]);
    let reply = ControlReply::sign_bound(&id, request_id, Some(hash), results);
    assert_eq!(&reply.encode()[..bound.len()], &bound[..], "kind 14 layout");
    assert!(verify_signature(&node, &bound, &reply.signature), "kind 14 signed bytes");
    assert_eq!(
        blake3::derive_key("quloud v1 answered request", b"request"),
        crate::domain::wire::request_hash(b"request"),
        "request hash"
    );
}

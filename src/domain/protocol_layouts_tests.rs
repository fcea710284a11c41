//! Pins the signed bytes of root records, writer leases, audit replies, audit batch replies and
//! house certificates to the layouts docs/PROTOCOL.md documents (4.7, 4.9, 4.10, 4.12, 4.13).

use crate::domain::audit::LeafProof;
use crate::domain::house::{HouseCert, HouseName};
use crate::domain::identity::{verify_signature, NodeIdentity};
use crate::domain::ids::{Addr, WriterId};
use crate::domain::keys::MasterKey;
use crate::domain::lease::WriterLease;
use crate::domain::snapshot::{PieceRef, RootRecord, SnapshotInfo};
use crate::domain::wire::{AuditBatchReply, AuditReply, Status};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, Verifier};

fn info() -> SnapshotInfo {
    let head =
        PieceRef { id: crate::domain::ids::ChunkId([1; 32]), addr: Addr([2; 32]), len: 77, seed: [3; 32] };
    SnapshotInfo { id: 4, taken_ms: 5, head, files: 6, bytes: 7, epoch: 8 }
}

/// 4.10: format 2 header, body plaintext, AAD and the signed bytes; a format-1 record built by
/// hand opens as epoch 0, not closed.
#[test]
fn root_record_layout_is_the_one_protocol_md_documents() {
    let keys = MasterKey::from_bytes([5; 32]).derive();
    let (signing, body_key) = (keys.root_signing_key(), keys.root_body_key());
    let record = RootRecord {
        version: 0x0102,
        epoch: 0x0304,
        closed: true,
        written_ms: 0x0506,
        snapshots: vec![info()],
    };
    let bytes = record.seal(signing, &body_key);
    // Body plaintext: count n (4) ‖ n × SnapshotInfo (id, taken_ms, PieceRef, files, bytes, epoch).
    let mut plain = 1u32.to_le_bytes().to_vec();
    for v in [4u64, 5] {
        plain.extend_from_slice(&v.to_le_bytes());
    }
    plain.extend_from_slice(&[1; 32]);
    plain.extend_from_slice(&[2; 32]);
    plain.extend_from_slice(&77u32.to_le_bytes());
    plain.extend_from_slice(&[3; 32]);
    for v in [6u64, 7, 8] {
        plain.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(plain.len(), 4 + 140);
    // Header: version 2 ‖ key ‖ version ‖ epoch ‖ closed ‖ written_ms ‖ nonce ‖ B.
    let mut head = vec![2];
    head.extend_from_slice(signing.verifying_key().as_bytes());
    head.extend_from_slice(&0x0102u64.to_le_bytes());
    head.extend_from_slice(&0x0304u64.to_le_bytes());
    head.push(1);
    head.extend_from_slice(&0x0506u64.to_le_bytes());
    let nonce: [u8; 12] = bytes[58..70].try_into().expect("nonce");
    head.extend_from_slice(&nonce);
    head.extend_from_slice(&((plain.len() + 16) as u32).to_le_bytes());
    assert_eq!(head.len(), 74);
    let body = ChaCha20Poly1305::new(Key::from_slice(&body_key))
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &head })
        .expect("encrypt");
    let mut msg = head.clone();
    msg.extend_from_slice(&body);
    assert_eq!(bytes.len(), 158 + 140, "total 158 + 140·n");
    assert_eq!(&bytes[..msg.len()], &msg[..], "format 2 layout");
    let sig = ed25519_dalek::Signature::from_slice(&bytes[msg.len()..]).expect("sig");
    let signed = [b"quloud v1 root record".as_slice(), &msg].concat();
    assert!(signing.verifying_key().verify(&signed, &sig).is_ok(), "root record signed bytes");

    // Format 1: version 1, no epoch/closed, 132-byte infos without the epoch.
    let mut h1 = vec![1];
    h1.extend_from_slice(signing.verifying_key().as_bytes());
    h1.extend_from_slice(&9u64.to_le_bytes());
    h1.extend_from_slice(&0x0506u64.to_le_bytes());
    h1.extend_from_slice(&nonce);
    let p1 = &plain[..4 + 132];
    h1.extend_from_slice(&((p1.len() + 16) as u32).to_le_bytes());
    assert_eq!(h1.len(), 65);
    let b1 = ChaCha20Poly1305::new(Key::from_slice(&body_key))
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: p1, aad: &h1 })
        .expect("encrypt");
    h1.extend_from_slice(&b1);
    let s1 = signing.sign(&[b"quloud v1 root record".as_slice(), &h1].concat());
    h1.extend_from_slice(&s1.to_bytes());
    assert_eq!(h1.len(), 149 + 132);
    let opened = RootRecord::open(&h1, &signing.verifying_key(), &body_key).expect("format 1 opens");
    assert_eq!((opened.version, opened.epoch, opened.closed), (9, 0, false));
    assert_eq!(opened.snapshots, vec![SnapshotInfo { epoch: 0, ..info() }]);
}

/// 4.12: the 129-byte lease and its signed bytes.
#[test]
fn writer_lease_layout_is_the_one_protocol_md_documents() {
    let keys = MasterKey::from_bytes([6; 32]).derive();
    let signing = keys.root_signing_key();
    let lease = WriterLease { epoch: 0x0a0b, writer: WriterId([7; 16]), taken_ms: 0x0c0d };
    let bytes = lease.seal(signing);
    let mut msg = vec![1];
    msg.extend_from_slice(signing.verifying_key().as_bytes());
    msg.extend_from_slice(&0x0a0bu64.to_le_bytes());
    msg.extend_from_slice(&[7; 16]);
    msg.extend_from_slice(&0x0c0du64.to_le_bytes());
    assert_eq!(msg.len(), 65);
    assert_eq!(bytes.len(), 129);
    assert_eq!(&bytes[..65], &msg[..], "lease layout");
    let sig = ed25519_dalek::Signature::from_slice(&bytes[65..]).expect("sig");
    let signed = [b"quloud v1 writer lease".as_slice(), &msg].concat();
    assert!(signing.verifying_key().verify(&signed, &sig).is_ok(), "lease signed bytes");
    assert_eq!(WriterLease::open(&bytes, &signing.verifying_key()), Ok(lease));
}

/// 4.7 and 4.9: kinds 6 and 15 signed over every byte before the signature; kind 9 is a count
/// and length-prefixed complete replies.
#[test]
fn audit_reply_layouts_are_the_ones_protocol_md_documents() {
    let id = NodeIdentity::from_bytes(&[9; 64]);
    let node = id.id();
    let (addr, seed, hash) = (Addr([3; 32]), [4u8; 32], [5u8; 32]);
    let proof = LeafProof { index: 0x0102, leaf: vec![6; 10], path: vec![[7; 32], [8; 32]] };
    let layout = |kind: u8, request: Option<&[u8; 32]>| {
        let mut v = vec![1, kind];
        v.extend_from_slice(&node.0);
        v.extend_from_slice(&addr.0);
        v.extend_from_slice(&seed);
        if let Some(h) = request {
            v.extend_from_slice(h);
        }
        v.push(Status::Ok as u8);
        v.push(1);
        v.extend_from_slice(&0x0102u64.to_le_bytes());
        v.extend_from_slice(&10u16.to_le_bytes());
        v.extend_from_slice(&[6; 10]);
        v.push(2);
        v.extend_from_slice(&[7; 32]);
        v.extend_from_slice(&[8; 32]);
        v
    };
    let plain = AuditReply::sign(&id, addr, seed, Status::Ok, vec![proof.clone()]);
    let body6 = layout(6, None);
    let enc6 = plain.encode();
    assert_eq!(&enc6[..body6.len()], &body6[..], "kind 6 layout");
    assert_eq!(enc6.len(), body6.len() + 64);
    assert!(verify_signature(&node, &body6, &plain.signature), "kind 6 signed bytes");
    let bound = AuditReply::sign_bound(&id, (addr, seed, Some(hash)), Status::Ok, vec![proof]);
    let body15 = layout(15, Some(&hash));
    let enc15 = bound.encode();
    assert_eq!(&enc15[..body15.len()], &body15[..], "kind 15 layout");
    assert!(verify_signature(&node, &body15, &bound.signature), "kind 15 signed bytes");
    // Kind 9: version ‖ kind ‖ n (1) ‖ n × (length (4, LE) ‖ reply).
    let mut batch = vec![1, 9, 2];
    for e in [&enc6, &enc15] {
        batch.extend_from_slice(&(e.len() as u32).to_le_bytes());
        batch.extend_from_slice(e);
    }
    assert_eq!(AuditBatchReply(vec![plain, bound]).encode(), batch, "kind 9 layout");
}

/// 4.13: the hub signs "quloud v1 house cert\0" ‖ node key ‖ issued_at (8, BE) ‖ house name.
#[test]
fn house_cert_signed_bytes_are_the_ones_protocol_md_documents() {
    let hub = NodeIdentity::from_bytes(&[2; 64]);
    let node = NodeIdentity::from_bytes(&[3; 64]).id();
    let house = HouseName::try_from("attic".to_string()).expect("name");
    let cert = HouseCert::issue(&hub, &house, &node, 0x0102_0304);
    let mut m = b"quloud v1 house cert\0".to_vec();
    m.extend_from_slice(&node.0);
    m.extend_from_slice(&0x0102_0304u64.to_be_bytes());
    m.extend_from_slice(b"attic");
    let sig = crate::domain::ids::from_hex::<64>(&cert.signature).expect("hex signature");
    assert!(verify_signature(&hub.id(), &m, &sig), "house cert signed bytes");
    assert_eq!(cert.node, crate::domain::ids::to_hex(&node.0));
    assert_eq!(cert.verify(&hub.id()), Some(node));
}

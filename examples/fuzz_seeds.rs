//! Writes one valid input per fuzz target into `fuzz/seeds/<target>/valid`, so fuzzing starts
//! from inputs that decode (a mutation alone never finds a point on the curve or a signature).
//! Deterministic: the same keys every time. Run from the repository root:
//! `cargo run --example fuzz_seeds`.

use quloud::domain::audit::{prove_leaves, select_leaves};
use quloud::domain::identity::{NodeIdentity, IDENTITY_LEN};
use quloud::domain::ids::{AckToken, Addr, ChunkId, RequestId};
use quloud::domain::keys::MasterKey;
use quloud::domain::paper;
use quloud::domain::proof::{prove, ProofContext, ProofSecret, Purpose};
use quloud::domain::share::Capability;
use quloud::domain::snapshot::{PieceRef, RootRecord};
use quloud::domain::wire::{
    request_hash, AuditBatch, AuditBatchReply, AuditReply, AuditRequest, ControlReply, ControlRequest,
    GetReply, ProvenRequest, Status, StoreAck, StoreRequest,
};

fn main() -> std::io::Result<()> {
    let id = NodeIdentity::from_bytes(&[1; IDENTITY_LEN]);
    let secret = || ProofSecret::from_seed(&[5; 32]);
    let (node, addr) = (id.id(), Addr([3; 32]));
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let leaves =
        prove_leaves(&data, &select_leaves(&[2; 32], data.len() as u64, 2)).expect("leaves in range");
    let audit = AuditRequest::build(&secret(), node, addr, [2; 32], 2, 5);
    let reply = AuditReply::sign(&id, addr, [2; 32], Status::Ok, leaves);
    let ctx = ProofContext {
        purpose: Purpose::Get,
        addr: [0; 32],
        target: [0; 32],
        timestamp_ms: 0,
        request_id: [0; 16],
    };
    let head = PieceRef { id: ChunkId([4; 32]), addr, len: 700, seed: [6; 32] };
    let root = RootRecord { version: 1, epoch: 1, closed: false, written_ms: 2, snapshots: Vec::new() };
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "store_request",
            StoreRequest::for_body(AckToken([1; 16]), b"ciphertext", 2, secret().commitment(), 123).encode(),
        ),
        ("store_ack", StoreAck::sign(&id, addr, &secret().commitment(), 1, 2, 3).encode()),
        (
            "proven_request",
            ProvenRequest::build(
                Purpose::Renew,
                node,
                99,
                1000,
                &[(addr, secret()), (Addr([4; 32]), secret())],
            )
            .encode(),
        ),
        (
            "get_reply",
            GetReply { node, addr, status: Status::Ok, ciphertext: b"ciphertext".to_vec() }.encode(),
        ),
        (
            "control_reply",
            ControlReply::sign(
                &id,
                RequestId([1; 16]),
                vec![(addr, Status::Ok), (Addr([4; 32]), Status::NotFound)],
            )
            .encode(),
        ),
        ("audit_request", audit.encode()),
        ("audit_reply", reply.encode()),
        ("audit_batch", AuditBatch(vec![audit.clone(), audit]).encode()),
        ("audit_batch_reply", AuditBatchReply(vec![reply.clone(), reply]).encode()),
        ("commitment", secret().commitment().to_bytes().to_vec()),
        ("proof", prove(&secret(), &ctx).to_bytes().to_vec()),
        // Signed with the key the `root_record` target checks against.
        ("root_record", root.seal(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]), &[8; 32])),
        ("capability", Capability { secret: [9; 32], head }.encode().into_bytes()),
        ("paper_key", paper::encode(&MasterKey::from_bytes([6; 32])).into_bytes()),
    ];
    // The kinds that carry control commitments and bind replies, beside the older ones.
    let owner = || secret().with_control(ProofSecret::from_seed(&[6; 32]));
    let controlled_audit = AuditRequest::build(&owner(), node, addr, [2; 32], 2, 5);
    let bound = Some(request_hash(&controlled_audit.encode()));
    let control =
        ControlRequest::build(Purpose::Delete, node, 99, 0, &[(addr, owner()), (Addr([4; 32]), owner())])
            .expect("owner secrets");
    let controlled: Vec<(&str, Vec<u8>)> = vec![
        (
            "store_request",
            StoreRequest::for_body(AckToken([1; 16]), b"ciphertext", 2, secret().commitment(), 123)
                .with_control(owner().control_commitment())
                .encode(),
        ),
        ("control_request", control.encode()),
        ("audit_request", controlled_audit.encode()),
        (
            "audit_reply",
            AuditReply::sign_bound(&id, (addr, [2; 32], bound), Status::NotFound, vec![]).encode(),
        ),
        (
            "control_reply",
            ControlReply::sign_bound(
                &id,
                control.request_id,
                Some(request_hash(&control.encode())),
                vec![(addr, Status::Ok)],
            )
            .encode(),
        ),
        ("audit_batch", AuditBatch(vec![controlled_audit.clone(), controlled_audit]).encode()),
    ];
    let files = seeds.into_iter().map(|(t, b)| (t, "valid", b));
    for (target, file, bytes) in files.chain(controlled.into_iter().map(|(t, b)| (t, "controlled", b))) {
        let dir = std::path::Path::new("fuzz/seeds").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(file), bytes)?;
    }
    println!("seeds written under fuzz/seeds/");
    Ok(())
}

//! Least authority against a real node over real NATS (issue 24): a share recipient, holding only
//! a chunk's read secret, can read it, and its renew, delete, audit and lease-raising store
//! request change nothing; the owner's data survives and the owner still controls it.

mod common;

use common::*;
use quloud::domain::proof::ProofSecret;
use quloud::domain::unix_ms;
use quloud::domain::wire::Status;
use quloud::ports::fabric::{AuditVerdict, ChunkFabric, Publish, StoreGoal};
use std::time::SystemTime;

fn now() -> u64 {
    unix_ms(SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_recipient_reads_and_cannot_renew_delete_audit_or_raise_a_lease() {
    let fabric = Fabric::start(1, "1GiB");
    let keys = vault(30);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let c = keys.seal(&bytes(60_000, 30));
    let len = c.ciphertext.len() as u64;
    let secret = keys.proof_secret(&c.addr);
    let publish = Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext };
    let acks =
        owner.store_controlled(publish, secret.control_commitment(), StoreGoal::fresh(1)).await.unwrap();
    let (node, lease) = (fabric.nodes[0].id, acks[0].lease_expiry_ms);

    // The recipient: a client of its own, with the read secret the share carries.
    let mut opts = test_options(&fabric.url());
    opts.lease = std::time::Duration::from_secs(200 * 24 * 3600);
    let recipient = owner_of_share(opts).await;
    let read = ProofSecret::from_seed(&keys.data().proof_seed(&c.addr));
    let got = recipient.get(&[(c.addr, read.clone())], &[node]).await.unwrap();
    assert_eq!(got.len(), 1, "a share reads");
    let refused = vec![(c.addr, Status::NotFound)];
    assert_eq!(recipient.renew(node, &[(c.addr, read.clone())], now() + 1).await.unwrap(), refused);
    assert_eq!(recipient.delete(node, &[(c.addr, read.clone())]).await.unwrap(), refused);
    assert_eq!(recipient.audit(node, c.addr, &read, len).await.unwrap(), AuditVerdict::NotFound);
    // A store request for the held chunk with a 200-day lease: acked with the lease held.
    let publish = Publish { addr: c.addr, commitment: c.commitment, ciphertext: &got[0].1 };
    let held = recipient.store(publish, StoreGoal::fresh(1)).await.unwrap();
    assert_eq!(held[0].lease_expiry_ms, lease, "a store request raised the lease");

    // The owner's data survives, and the owner still audits, renews and deletes it.
    assert_eq!(owner.audit(node, c.addr, &secret, len).await.unwrap(), AuditVerdict::Passed);
    let renewed = owner.renew(node, &[(c.addr, secret.clone())], now() + 3_600_000).await.unwrap();
    assert_eq!(renewed, vec![(c.addr, Status::Ok)]);
    assert_eq!(owner.get(&[(c.addr, secret.clone())], &[node]).await.unwrap().len(), 1);
    assert_eq!(owner.delete(node, &[(c.addr, secret)]).await.unwrap(), vec![(c.addr, Status::Ok)]);
}

/// A client connected with a vault of its own (the share recipient has no key of the owner's).
async fn owner_of_share(
    opts: quloud::adapters::nats::fabric::FabricOptions,
) -> quloud::adapters::nats::fabric::NatsFabric {
    owner(&vault(31), opts).await
}

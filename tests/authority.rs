//! Least authority against real nodes over real NATS: a share recipient, holding only a chunk's
//! read secret, can read it, and its renew, delete, audit and lease-raising store request change
//! nothing; the owner's data survives and the owner still controls it. Once with the read secret
//! alone, once end to end with what `quloud share` hands out and a real share mount.

mod common;

use common::*;
use quloud::domain::proof::ProofSecret;
use quloud::domain::share::Capability;
use quloud::domain::unix_ms;
use quloud::domain::wire::Status;
use quloud::ports::fabric::{AuditVerdict, ChunkFabric, Publish, StoreGoal};
use std::process::Output;
use std::time::{Duration, SystemTime};

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

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The read secret of every chunk a capability covers, as its recipient gets them: the share's
/// manifest, fetched from the fabric and opened with the capability alone.
async fn share_secrets(
    client: &impl ChunkFabric,
    cap: &Capability,
    at: &std::path::Path,
) -> Vec<(quloud::domain::ids::Addr, ProofSecret)> {
    use quloud::adapters::redb::manifest::{Manifest, RedbManifests};
    let file = quloud::app::vault::ManifestFile { path: at, files: &RedbManifests };
    quloud::app::vault::materialize_share(client, cap, file, Duration::from_secs(20), &|_, _| {})
        .await
        .unwrap();
    let manifest = Manifest::open(at, 0, 0).unwrap();
    let rx = manifest.read().unwrap();
    let mut secrets = Vec::new();
    for (addr, _) in rx.summary().unwrap().chunks {
        if let Some((_, seed)) = rx.share_secret(&addr).unwrap() {
            secrets.push((addr, ProofSecret::from_seed(&seed)));
        }
    }
    secrets
}

/// End to end: the owner shares a directory with `quloud share`; the recipient mounts the share
/// and reads it; then, with the secrets the capability gives and a reply inbox of its own, the
/// recipient asks every node holding a shared chunk to delete it, to renew it for 1 ms (with and
/// without a control commitment of its own) and to pass an audit. Every node refuses every item,
/// every chunk is still served, and the owner's `quloud audit --now` finds every chunk healthy.
#[test]
fn a_real_share_mount_reads_and_its_secrets_cannot_delete_renew_or_audit() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    let files = [("photos/beach.jpg", bytes(1_500_000, 41)), ("photos/notes.txt", bytes(90_000, 42))];
    for (name, data) in &files {
        std::fs::create_dir_all(m.path(name).parent().unwrap()).unwrap();
        std::fs::write(m.path(name), data).unwrap();
    }
    wait_durable(&m.home);
    let out = quloud(&m.home).arg("share").arg(m.path("photos")).output().unwrap();
    assert!(out.status.success(), "quloud share: {}", text(&out));
    let cap_text =
        text(&out).split_whitespace().find(|w| w.starts_with("QS1-")).expect("a capability").to_string();

    let (rhome, rmp) = (tmp.path().join("friend-home"), tmp.path().join("friend-mp"));
    let mut shared = Mount::start_verb(&rhome, &rmp, &fabric.url(), &["mount"], &["--share", &cap_text]);
    for (name, data) in &files {
        let got = std::fs::read(shared.path(name.strip_prefix("photos/").unwrap())).unwrap();
        assert!(got == *data, "{name} differs through the share mount");
    }
    shared.unmount();

    let cap = Capability::decode(&cap_text).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let recipient = owner_of_share(test_options(&fabric.url())).await;
        let secrets = share_secrets(&recipient, &cap, &tmp.path().join("share.redb")).await;
        assert!(secrets.len() >= 2, "the share lists its chunks: {}", secrets.len());
        let refused = |addr| vec![(addr, Status::NotFound)];
        let mut attacked = 0;
        for (addr, read) in &secrets {
            let own_q = read.clone().with_control(ProofSecret::from_seed(&[0x99; 32]));
            for node in fabric.node_ids() {
                let Ok(got) = recipient.get(&[(*addr, read.clone())], &[node]).await else { continue };
                let Some((_, ciphertext)) = got.into_iter().next() else { continue };
                let len = ciphertext.len() as u64;
                let one = |s: &ProofSecret| vec![(*addr, s.clone())];
                assert_eq!(recipient.delete(node, &one(read)).await.unwrap(), refused(*addr), "delete");
                assert_eq!(
                    recipient.renew(node, &one(read), now() + 1).await.unwrap(),
                    refused(*addr),
                    "renew"
                );
                assert_eq!(
                    recipient.delete(node, &one(&own_q)).await.unwrap(),
                    refused(*addr),
                    "delete, own Q"
                );
                assert_eq!(
                    recipient.renew(node, &one(&own_q), now() + 1).await.unwrap(),
                    refused(*addr),
                    "renew, own Q"
                );
                assert_eq!(
                    recipient.audit(node, *addr, read, len).await.unwrap(),
                    AuditVerdict::NotFound,
                    "audit"
                );
                let still = recipient.get(&[(*addr, read.clone())], &[node]).await.unwrap();
                assert_eq!(still.len(), 1, "{addr:?} gone from {node:?}");
                attacked += 1;
            }
        }
        assert!(attacked >= 2 * secrets.len(), "too few holders found: {attacked}");
    });
    let audit = quloud(&m.home).args(["audit", "--now"]).output().unwrap();
    assert!(audit.status.success(), "the owner's audit after the attacks: {}", text(&audit));
    m.unmount();
}

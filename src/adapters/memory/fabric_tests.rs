//! The memory fabric keeps the fabric contract, and its switches do what they say.

use super::*;
use crate::adapters::memory::FakeClock;
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::seal::SealedChunk;
use crate::domain::snapshot::{choose_root, root_locator, RootRecord};
use crate::domain::unix_ms;

#[path = "../../../tests/common/fabric_contract.rs"]
mod contract;

const TIMEOUT: Duration = Duration::from_millis(200);

fn fabric(nodes: usize) -> MemoryFabric {
    let mut opts = MemoryFabricOptions::new(nodes);
    opts.reply_timeout = TIMEOUT;
    opts.store_deadline = Duration::from_millis(600);
    MemoryFabric::with(opts, Arc::new(SystemClock))
}

fn keys() -> VaultKeys {
    MasterKey::from_bytes([21; 32]).derive()
}

fn sealed(keys: &VaultKeys, seed: u8) -> SealedChunk {
    keys.seal(&(0..40_000u32).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<u8>>())
}

fn chunk(c: &SealedChunk) -> Publish<'_> {
    Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext }
}

struct MemoryBench(MemoryFabric);

impl contract::Bench for MemoryBench {
    type Fabric = MemoryFabric;

    fn fabric(&self) -> &MemoryFabric {
        &self.0
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.0.node_ids()
    }

    fn corrupt_stored(&mut self, node: NodeId, addr: Addr) {
        self.0.corrupt_stored(node, &addr);
    }

    fn silence(&mut self, node: NodeId) {
        self.0.set_fault(node, NodeFault::DropReplies);
    }

    fn reply_timeout(&self) -> Duration {
        TIMEOUT
    }
}

#[tokio::test]
async fn the_memory_fabric_keeps_the_fabric_contract() {
    contract::run(&mut MemoryBench(fabric(4))).await;
}

#[tokio::test]
async fn an_offline_node_takes_nothing_and_fails_at_once() {
    let f = fabric(4);
    let keys = keys();
    let gone = f.node_ids()[0];
    f.set_fault(gone, NodeFault::Offline);
    let c = sealed(&keys, 1);
    let acks = f.store(chunk(&c), StoreGoal::fresh(3)).await.expect("three others");
    assert!(acks.iter().all(|a| a.node != gone));
    assert_eq!(f.requests(gone, Op::Store), 0, "an offline node sees no request");
    let started = Instant::now();
    let r = f.audit(gone, c.addr, &keys.proof_secret(&c.addr), c.ciphertext.len() as u64).await;
    assert!(matches!(r, Err(FabricError::Timeout(n)) if n == gone), "{r:?}");
    assert!(started.elapsed() < TIMEOUT, "nobody listens: no wait");
    // Back online, it catches up on the root records published while it was away.
    let vk = keys.root_signing_key().verifying_key();
    let record = RootRecord { version: 1, epoch: 0, closed: false, written_ms: 1, snapshots: Vec::new() }
        .seal(keys.root_signing_key(), &keys.root_body_key());
    f.publish_root(&root_locator(&vk), &record).await.expect("published");
    assert!(f.node(gone).expect("node").root(&root_locator(&vk)).is_none());
    f.set_fault(gone, NodeFault::Healthy);
    assert_eq!(f.node(gone).expect("node").root(&root_locator(&vk)), Some(record));
}

#[tokio::test]
async fn dropped_replies_cost_the_reply_timeout_and_dropped_acks_do_not_count() {
    let f = fabric(3);
    let keys = keys();
    let mute = f.node_ids()[1];
    f.set_fault(mute, NodeFault::DropReplies);
    let c = sealed(&keys, 2);
    let r = f.store(chunk(&c), StoreGoal::fresh(3)).await;
    assert!(matches!(r, Err(FabricError::Quorum { got: 2, want: 3, .. })), "{r:?}");
    assert!(f.holders(&c.addr).contains(&mute), "it stored the chunk; only its ack was lost");
    let started = Instant::now();
    let r = f.audit(mute, c.addr, &keys.proof_secret(&c.addr), c.ciphertext.len() as u64).await;
    assert!(matches!(r, Err(FabricError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() >= TIMEOUT, "the owner waited for the reply");
    assert_eq!(f.requests(mute, Op::Audit), 1, "the request reached it");
}

#[tokio::test]
async fn late_replies_arrive_late_or_time_out() {
    let f = fabric(3);
    let keys = keys();
    let c = sealed(&keys, 3);
    let acks = f.store(chunk(&c), StoreGoal::fresh(3)).await.expect("stored");
    let (slow, secret, len) = (acks[0].node, keys.proof_secret(&c.addr), c.ciphertext.len() as u64);
    f.set_fault(slow, NodeFault::DelayReplies(Duration::from_millis(50)));
    let started = Instant::now();
    assert_eq!(f.audit(slow, c.addr, &secret, len).await.expect("audit"), AuditVerdict::Passed);
    assert!(started.elapsed() >= Duration::from_millis(50));
    f.set_fault(slow, NodeFault::DelayReplies(TIMEOUT * 2));
    let r = f.audit(slow, c.addr, &secret, len).await;
    assert!(matches!(r, Err(FabricError::Timeout(_))), "{r:?}");
    // A get hinted at it falls back to the others once it stays silent.
    let got = f.get(&[(c.addr, secret)], &[slow]).await.expect("get");
    assert!(got.len() == 1 && got[0].1[..] == c.ciphertext[..]);
}

#[tokio::test]
async fn corrupted_replies_never_pass_a_check() {
    let f = fabric(3);
    let keys = keys();
    let c = sealed(&keys, 4);
    let acks = f.store(chunk(&c), StoreGoal::fresh(3)).await.expect("stored");
    let liar = acks[0].node;
    let (secret, len) = (keys.proof_secret(&c.addr), c.ciphertext.len() as u64);
    f.set_fault(liar, NodeFault::CorruptReplies);
    assert!(matches!(f.audit(liar, c.addr, &secret, len).await, Ok(AuditVerdict::Failed(_))));
    let verdicts = f.audit_many(liar, &[(c.addr, secret.clone(), len)]).await.expect("audits");
    assert!(matches!(verdicts[..], [AuditVerdict::Failed(_)]), "{verdicts:?}");
    let r = f.renew(liar, &[(c.addr, secret.clone())], unix_ms(std::time::SystemTime::now()) + 1000).await;
    assert!(matches!(r, Err(FabricError::BadReply { .. })), "{r:?}");
    // Its bytes are refused; another holder serves the real ones.
    let got = f.get(&[(c.addr, secret)], &[liar]).await.expect("get");
    assert!(got.len() == 1 && got[0].1[..] == c.ciphertext[..], "{got:?}");
    assert!(f.requests(liar, Op::Get) >= 1);
    // Its damaged store acks are dropped: it cannot complete a quorum.
    let d = sealed(&keys, 5);
    let r = f.store(chunk(&d), StoreGoal::fresh(3)).await;
    assert!(matches!(r, Err(FabricError::Quorum { got: 2, .. })), "{r:?}");
}

#[tokio::test]
async fn a_corrupted_stored_copy_is_dropped_by_its_node() {
    let f = fabric(3);
    let keys = keys();
    let c = sealed(&keys, 6);
    let acks = f.store(chunk(&c), StoreGoal::fresh(2)).await.expect("stored");
    let bad = acks[0].node;
    f.corrupt_stored(bad, &c.addr);
    let verdict = f.audit(bad, c.addr, &keys.proof_secret(&c.addr), c.ciphertext.len() as u64).await;
    assert_eq!(verdict.expect("audit"), AuditVerdict::NotFound, "the node finds the damage and drops it");
    assert!(!f.holders(&c.addr).contains(&bad));
    // Healing it: the healthy replica is held, one more slot is published.
    let healthy = [(acks[1].node, acks[1].slot)];
    let goal = StoreGoal { replicas: 2, held: &healthy, exclude: &[], placement: None };
    let healed = f.store(chunk(&c), goal).await.expect("healed");
    assert_eq!(healed.len(), 1);
    assert_ne!(healed[0].slot, acks[1].slot);
}

#[tokio::test]
async fn a_disconnected_link_is_reported_and_waited_for() {
    let f = Arc::new(fabric(3));
    let keys = keys();
    f.disconnect();
    assert!(!f.link().connected);
    assert!(!f.up_within(Duration::from_millis(20)).await);
    let node = f.node_ids()[0];
    let c = sealed(&keys, 7);
    let r = f.audit(node, c.addr, &keys.proof_secret(&c.addr), 1).await;
    assert!(matches!(r, Err(FabricError::Timeout(_))), "{r:?}");
    assert!(f.fetch_roots("x").await.is_err());
    let back = f.clone();
    let reconnect = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        back.reconnect();
    });
    let acks = f.store(chunk(&c), StoreGoal::fresh(2)).await.expect("stored once the link is back");
    assert_eq!(acks.len(), 2);
    reconnect.await.expect("reconnected");
    assert!(f.link().connected && f.up_within(Duration::ZERO).await);
}

#[tokio::test]
async fn leases_end_on_the_fake_clock() {
    let clock = Arc::new(FakeClock::at(1_000_000_000));
    let mut opts = MemoryFabricOptions::new(2);
    opts.lease = Duration::from_secs(3600);
    let f = MemoryFabric::with(opts, clock.clone());
    let keys = keys();
    let c = sealed(&keys, 8);
    f.store(chunk(&c), StoreGoal::fresh(2)).await.expect("stored");
    assert_eq!(f.sweep_expired(), 0);
    clock.advance(Duration::from_secs(3601));
    assert_eq!(f.sweep_expired(), 2);
    assert!(f.holders(&c.addr).is_empty());
}

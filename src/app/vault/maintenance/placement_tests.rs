//! Placement by houses against the in-memory fabric: uploads wait for enough houses, replicas
//! land one per other house, and healing after a house is revoked picks houses that do not
//! hold the chunk yet.

use crate::adapters::local::LocalFiles;
use crate::adapters::memory::{FakeClock, MemoryFabric, MemoryFabricOptions};
use crate::app::vault::{run_pipeline, Caller, HealWorker, PipelineStats, Vault, VaultOptions};
use crate::domain::fs::ROOT_INO;
use crate::domain::house::HouseCert;
use crate::domain::identity::NodeIdentity;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::MasterKey;
use crate::domain::placement::{HouseListing, HousePolicy, OwnHouse};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// The houses of the six memory nodes, in order: alice is the owner's own, bob has two nodes.
const HOUSES: [&str; 6] = ["alice", "bob", "bob", "carol", "dave", "erin"];

fn hub() -> NodeIdentity {
    NodeIdentity::from_bytes(&[200; 64])
}

fn listing(ids: &[NodeId], without: Option<&str>) -> Vec<HouseListing> {
    ids.iter()
        .zip(HOUSES)
        .filter(|(_, h)| Some(*h) != without)
        .map(|(n, h)| HouseListing {
            cert: HouseCert::issue(&hub(), &h.parse().unwrap(), n, 1),
            seen_ago: Some(0),
        })
        .collect()
}

/// The house of each replica of `addr`, checked to be distinct and never alice's.
fn replica_houses(v: &Vault<MemoryFabric>, ids: &[NodeId], addr: &Addr) -> BTreeSet<&'static str> {
    let c = v.m.read().unwrap().chunk(addr).unwrap().unwrap();
    let houses: Vec<&str> =
        c.replicas.iter().map(|r| HOUSES[ids.iter().position(|n| *n == r.node).unwrap()]).collect();
    let distinct: BTreeSet<&str> = houses.iter().copied().collect();
    assert_eq!(distinct.len(), houses.len(), "two replicas in one house: {houses:?}");
    assert!(!distinct.contains("alice"), "a replica in the owner's own house: {houses:?}");
    distinct
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_go_one_per_other_house_and_heal_to_houses_without_the_chunk() {
    let home = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let mut fopts = MemoryFabricOptions::new(6);
    fopts.reply_timeout = Duration::from_millis(200);
    let fabric = Arc::new(MemoryFabric::with(fopts, clock.clone()));
    let ids = fabric.node_ids();
    let policy =
        HousePolicy { hub_key: hub().id(), own: "alice".parse().unwrap(), own_house: OwnHouse::Excluded };
    let opts = VaultOptions { houses: Some(policy), ..VaultOptions::default() };
    let keys = Arc::new(MasterKey::from_bytes([5; 32]).derive());
    let m = crate::adapters::redb::manifest::open_in(home.path());
    let v = Arc::new(Vault::load(home.path(), m, keys, opts, &LocalFiles, clock.clone()).unwrap());
    v.set_fabric(fabric.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(run_pipeline(v.clone(), Arc::new(PipelineStats::default()), cancel.clone()));
    assert!(v.placement_blocked().is_some(), "no listing fetched yet");

    // Only carol and dave besides the owner's house and an uncertified pair: uploads wait.
    fabric.set_houses(
        listing(&ids, Some("bob")).into_iter().filter(|l| l.cert.house.as_str() != "erin").collect(),
    );
    v.refresh_houses(&fabric).await.unwrap();
    let why = v.placement_blocked().expect("too few houses");
    assert!(why.starts_with("2 other houses reachable, 3 replicas wanted"), "{why}");
    let (attr, fh) = v.create(Caller { uid: 0, gid: 0 }, ROOT_INO, b"f", 0o644, 0, 0).unwrap();
    let data: Vec<u8> = (0..3 << 20).map(|i| (i * 31 % 251) as u8).collect();
    v.write_staged(attr.ino, fh, 0, &data).unwrap().unwrap();
    v.release(attr.ino, fh).unwrap();

    // Every house listed: each chunk gets one replica in three houses other than alice's.
    fabric.set_houses(listing(&ids, None));
    v.refresh_houses(&fabric).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = v.status().unwrap();
        if s.chunks > 0 && s.durable == s.chunks && s.staged_files == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not durable in time: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addrs: Vec<Addr> =
        v.m.read().unwrap().extents(attr.ino, 0, u64::MAX).unwrap().iter().map(|e| e.addr).collect();
    let first = replica_houses(&v, &ids, &addrs[0]);
    for a in &addrs {
        assert_eq!(replica_houses(&v, &ids, a).len(), 3);
    }

    // A house holding replicas is revoked (the hub lists it no more): healing brings every
    // chunk back to three houses, none of them the revoked one.
    let gone = *first.iter().next().unwrap();
    fabric.set_houses(listing(&ids, Some(gone)));
    v.refresh_houses(&fabric).await.unwrap();
    HealWorker.run_once(&v, &fabric).await.unwrap();
    for a in &addrs {
        let c = v.m.read().unwrap().chunk(a).unwrap().unwrap();
        let counted: Vec<NodeId> = c
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|n| HOUSES[ids.iter().position(|i| i == n).unwrap()] != gone)
            .collect();
        let houses: BTreeSet<&str> =
            counted.iter().map(|n| HOUSES[ids.iter().position(|i| i == n).unwrap()]).collect();
        assert_eq!(houses.len(), 3, "healed to three houses without {gone}: {houses:?}");
        assert!(!houses.contains("alice"));
    }
    cancel.cancel();
}

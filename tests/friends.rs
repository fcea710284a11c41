//! Backing up to friends, end to end across network namespaces: a hub and four or five houses,
//! each in a namespace of its own joined to a bridge by a veth pair, each running a leaf
//! nats-server and a storage node (`quloud join`, `quloud up --house`); the owner's real FUSE
//! mount in the first house. Invites are spent once across namespaces; a large file lands in
//! three other houses under capped uplinks; a house offline within the grace costs nothing,
//! past it is healed around and trimmed when it returns; a revoked house is refused and healed
//! around. Churn durations are scaled down to seconds with the mount's flags.

mod common;

use common::bytes;
use common::friends::{text, Friends, WITHIN};
use common::poll_until;
use quloud::domain::house::Invite;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const EVERY: Duration = Duration::from_millis(250);

/// A join from house machine `i` that must fail with one `error` line naming `expect`, and
/// write no house.
fn refused_join(f: &Friends, i: usize, name: &str, invite: &str, expect: &str) {
    let home = f.tmp.path().join(name);
    let out = f.quloud(i, &home, &["join", invite, "--capacity", "1GiB"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "join should fail: {}", text(&out));
    let errors: Vec<_> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains(expect), "{expect:?} in {err}");
    assert!(!home.join("house").exists(), "a refused join wrote {}", home.display());
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn four_houses_join_from_their_namespaces_and_spent_expired_forged_invites_are_refused() {
    let mut f = Friends::start(4);
    let spent = f.invite("alice", &[]);
    let short = f.invite("zoe", &["--expires", "1s"]);
    let mut forged = Invite::decode(&f.invite("yann", &[])).unwrap();
    forged.secret[0] ^= 1;

    // Alice uses her invite from her namespace; the same line from another box is spent.
    let home = f.tmp.path().join("alice");
    let out = f.quloud(1, &home, &["join", &spent, "--capacity", "1GiB"]).output().unwrap();
    assert!(out.status.success(), "join alice: {}", text(&out));
    refused_join(&f, 2, "mallory", &spent, "no unused invite");
    let expires_at = Invite::decode(&short).unwrap().expires_at;
    poll_until(WITHIN, Duration::from_millis(100), "the short invite to expire", || now_s() > expires_at);
    refused_join(&f, 3, "zoe", &short, "expired");
    refused_join(&f, 4, "yann", &forged.encode(), "no unused invite");
    std::fs::remove_dir_all(&home).unwrap();

    // Alice joined already (her house name is taken); four houses join with fresh invites.
    for name in ["bob", "carol", "dave", "erin"] {
        f.join(name, None);
    }
    f.wait_all_seen();
    let members = f.members();
    let names: Vec<&str> = members["houses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["last_seen"].as_u64() > Some(0))
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{members}");
    for h in &f.houses {
        assert!(names.contains(&h.name.as_str()), "{} not seen: {members}", h.name);
    }
}

/// The size of the large file in MiB (`QULOUD_FRIENDS_MIB`, default 200: durable in three other
/// houses in about 45 s on an idle 2-core machine).
fn large_mib() -> usize {
    std::env::var("QULOUD_FRIENDS_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

#[test]
fn a_large_file_lands_in_three_other_houses_one_replica_each_through_capped_uplinks() {
    let mut f = Friends::start(4);
    f.join("alice", Some(&["--snapshot-interval", "0"]));
    for name in ["bob", "carol", "dave"] {
        f.join(name, None);
    }
    for h in 0..4 {
        f.cap_uplink(h, "400mbit");
    }
    poll_until(WITHIN, EVERY, "alice to see three other houses", || {
        f.status(0)["placement"]["houses_reachable"].as_u64() == Some(3)
    });
    let mib = large_mib();
    let data = bytes(mib * MIB, 21);
    let (started, sent) = (Instant::now(), f.tx_bytes(0));
    std::fs::write(f.houses[0].path("large.bin"), &data).unwrap();
    std::fs::File::open(f.houses[0].path("large.bin")).unwrap().sync_all().unwrap();
    let chunks = f.wait_durable(0, Duration::from_secs(240));
    let uplink = (f.tx_bytes(0) - sent) as f64 / (mib * MIB) as f64;
    eprintln!(
        "{mib} MiB durable in 3 other houses after {:?} ({chunks} chunks); the owner's uplink sent {uplink:.2} bytes per byte stored",
        started.elapsed()
    );

    // The owner's view: every chunk counted once on each other house's node, none on its own.
    let others: BTreeMap<String, u64> = f.houses[1..].iter().map(|h| (h.node(), chunks)).collect();
    assert_eq!(f.per_node(0), others, "one replica of every chunk in each other house");
    // The disks agree: each other house holds every chunk; the owner's own node holds none.
    for h in &f.houses[1..] {
        assert_eq!(h.bodies().len() as u64, chunks, "replicas on {}'s disk", h.name);
    }
    // The owner's own node leaves its house's store requests to other houses' nodes.
    let own = f.houses[0].bodies().len();
    assert_eq!(own, 0, "copies of the owner's chunks on its own node ({chunks} chunks)");
    let stored: u64 = f.houses[1..].iter().map(|h| h.body_bytes()).sum();
    assert!(stored >= 3 * (mib * MIB) as u64, "{stored} bytes stored for 3 × {mib} MiB");
    assert!(std::fs::read(f.houses[0].path("large.bin")).unwrap() == data, "the file reads back different");
}

/// The grace of the churn scenarios: long enough to watch an offline house not be healed around.
const GRACE: Duration = Duration::from_secs(25);

/// An owner (alice) and four friends' houses, the churn durations in seconds, and a few files
/// made durable and audited once on every node that holds replicas; returns the chunk count.
fn owner_and_four_friends(f: &mut Friends) -> u64 {
    let grace = format!("{}s", GRACE.as_secs());
    let flags = [
        "--audit-interval",
        "2s",
        "--offline-after",
        "2s",
        "--offline-grace",
        &grace,
        "--snapshot-interval",
        "0",
    ];
    f.join("alice", Some(&flags));
    for name in ["bob", "carol", "dave", "erin"] {
        f.join(name, None);
    }
    poll_until(WITHIN, EVERY, "alice to see four other houses", || {
        f.status(0)["placement"]["houses_reachable"].as_u64() == Some(4)
    });
    for (name, len, seed) in [("a.bin", 6 * MIB, 1), ("b.bin", 3 * MIB + 777, 2)] {
        std::fs::write(f.houses[0].path(name), bytes(len, seed)).unwrap();
        std::fs::File::open(f.houses[0].path(name)).unwrap().sync_all().unwrap();
    }
    let chunks = f.wait_durable(0, WITHIN);
    poll_until(WITHIN, EVERY, "a first audit of every node holding replicas", || {
        let rows = f.nodes(0);
        rows.iter().filter(|r| r["chunks"].as_u64() > Some(0)).all(|r| r["audits_passed"].as_u64() > Some(0))
    });
    chunks
}

/// The friend's house holding the most replicas.
fn fullest(f: &Friends) -> usize {
    (1..f.houses.len()).max_by_key(|&h| f.houses[h].bodies().len()).unwrap()
}

/// Replicas on the disks of the friends' houses other than `victim`.
fn held_elsewhere(f: &Friends, victim: usize) -> usize {
    (1..f.houses.len()).filter(|h| *h != victim).map(|h| f.houses[h].bodies().len()).sum()
}

/// Whether the owner's manifest has a replica of every chunk on the node of each friend's house
/// but `victim`'s, and none degraded.
fn every_chunk_in_each_other_house(f: &Friends, victim: usize, chunks: u64) -> bool {
    let s = f.status(0);
    let per_node: BTreeMap<String, u64> = serde_json::from_value(s["per_node"].clone()).unwrap();
    s["degraded"] == 0
        && (1..f.houses.len())
            .filter(|h| *h != victim)
            .all(|h| per_node.get(&f.houses[h].node()) == Some(&chunks))
}

/// Chunks the owner's log says it healed (one line per chunk re-replicated).
fn healed(f: &Friends) -> usize {
    f.houses[0].up.as_ref().unwrap().out().matches("chunk healed").count()
}

#[test]
fn a_house_offline_within_the_grace_costs_nothing_past_it_is_healed_around_and_trimmed_on_return() {
    let mut f = Friends::start(5);
    let chunks = owner_and_four_friends(&mut f);
    let victim = fullest(&f);
    let node = f.houses[victim].node();
    // Its replicas the owner counts (a node may also keep copies of slots it took after the
    // chunk was durable: the owner never recorded those, and their leases run out).
    let counted = f.per_node(0)[&node] as usize;
    let held = f.houses[victim].bodies().len();
    let before = held_elsewhere(&f, victim);
    let healed_before = healed(&f);
    f.link(victim, false);
    let down = Instant::now();

    // Within the grace: offline, its replicas still count, nothing is re-replicated.
    let unchanged = |f: &Friends| {
        let late = down.elapsed();
        assert_eq!(healed(f), healed_before, "healed {late:?} after the link went down");
        assert_eq!(held_elsewhere(f, victim), before, "re-replicated {late:?} after the link went down");
    };
    poll_until(GRACE, EVERY, "the house to be seen offline", || {
        unchanged(&f);
        f.status(0)["nodes"]["offline"].as_u64() == Some(1)
    });
    poll_until(GRACE, EVERY, "most of the grace to pass", || {
        unchanged(&f);
        down.elapsed() >= GRACE * 3 / 4
    });
    let s = f.status(0);
    assert_eq!(s["degraded"].as_u64(), Some(0), "{s}");
    assert!(s["in_grace"].as_u64() > Some(0), "{s}");
    assert_eq!(s["repair"]["paused"], false, "{s}");

    // Past the grace: healed to three houses without it, exactly its chunks.
    poll_until(Duration::from_secs(90), EVERY, "healing past the grace", || {
        every_chunk_in_each_other_house(&f, victim, chunks)
    });
    assert!(down.elapsed() >= GRACE, "healed before the grace ended");
    // At most its chunks were re-replicated (no heal-and-trim loop); fewer when another house's
    // node already kept a copy of a slot it took, which its ack then recorded without a heal.
    let healed = healed(&f) - healed_before;
    assert!((1..=counted).contains(&healed), "{healed} heals for the offline house's {counted} chunks");
    assert!(held_elsewhere(&f, victim) >= 3 * chunks as usize, "the other houses' disks hold fewer copies");

    // Back: re-audited, and the copies it kept are surplus: deleted from its disk.
    f.link(victim, true);
    poll_until(Duration::from_secs(90), EVERY, "its surplus copies to be deleted", || {
        f.houses[victim].bodies().len() <= held - counted
            && !f.per_node(0).contains_key(&node)
            && f.status(0)["nodes"]["offline"] == 0
    });
    assert!(
        f.houses[0].up.as_ref().unwrap().out().contains("node answers again"),
        "the return is not logged"
    );
    let s = f.status(0);
    assert_eq!((s["degraded"].as_u64(), s["durable"].as_u64()), (Some(0), Some(chunks)), "{s}");
    let per_node = f.per_node(0);
    assert_eq!(per_node.values().sum::<u64>(), 3 * chunks, "{per_node:?}");
    assert!(per_node.values().all(|n| *n <= chunks), "two replicas of a chunk in one house: {per_node:?}");
}

#[test]
fn a_revoked_house_is_refused_and_its_replicas_are_healed_in_other_houses() {
    let mut f = Friends::start(5);
    let chunks = owner_and_four_friends(&mut f);
    let victim = fullest(&f);
    let name = f.houses[victim].name.clone();
    let healed_before = healed(&f);
    let counted = f.per_node(0)[&f.houses[victim].node()] as usize;
    f.on_hub(&["revoke", &name]);

    // Refused: from now on each reconnection of its leaf server is an authorization violation
    // (joins also restart the hub, so only violations after the revoke count).
    let logged = f.houses[victim].nats_log().len();
    let refusals =
        |f: &Friends| f.houses[victim].nats_log()[logged..].matches("Authorization Violation").count();
    poll_until(WITHIN, EVERY, "the revoked house's leaf refused again and again", || refusals(&f) >= 3);
    let members = f.members();
    let row =
        members["houses"].as_array().unwrap().iter().find(|h| h["name"] == name.as_str()).unwrap().clone();
    assert_eq!(row["revoked"], true, "{members}");

    // Healed: every chunk in the three other friends' houses, exactly the revoked house's
    // replicas re-replicated (its records stay until it is written off: it never answers).
    poll_until(Duration::from_secs(120), EVERY, "its replicas healed in the other houses", || {
        every_chunk_in_each_other_house(&f, victim, chunks)
    });
    // At most its chunks were re-replicated (no heal-and-trim loop); fewer when another house's
    // node already kept a copy of a slot it took, which its ack then recorded without a heal.
    let healed = healed(&f) - healed_before;
    assert!((1..=counted).contains(&healed), "{healed} heals for the revoked house's {counted} chunks");
    for h in (1..f.houses.len()).filter(|h| *h != victim) {
        let n = f.houses[h].bodies().len() as u64;
        assert!(n >= chunks, "{} holds {n} of {chunks} chunks on its disk", f.houses[h].name);
    }
    assert!(!f.per_node(0).contains_key(&f.houses[0].node()), "a replica in the owner's own house");
    assert!(refusals(&f) > 3, "the revoked house got back in");
}

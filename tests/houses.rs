//! Friends' houses on real nats-servers: a hub (`quloud up --hub`, TLS, JetStream) and houses
//! (`quloud join`, then `quloud up --house`: a leaf nats-server and a storage node each), all on
//! loopback ports. Invites are spent once; expired, forged and mistyped ones change nothing; a
//! chunk stored from one house is acked by nodes in the others over the leaf links; a revoked
//! house is refused; an owner's replicas go to other houses, one per house, counted only on
//! nodes whose hub-signed certificate verifies.

mod common;

use common::up::Up;
use common::*;
use quloud::domain::house::{HouseCert, Invite};
use quloud::domain::ids::NodeId;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

struct Hub {
    home: PathBuf,
    up: Up,
}

impl Hub {
    fn start(dir: &Path) -> Hub {
        require_tool("nats-server", "apt-get install -y nats-server");
        require_tool("openssl", "apt-get install -y openssl");
        let home = dir.join("hub");
        let ports = free_ports(3);
        let p: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        let args = [
            "--hub",
            "--public",
            "127.0.0.1",
            "--port",
            &p[0],
            "--leaf-port",
            &p[1],
            "--monitor-port",
            &p[2],
        ];
        let mut up = Up::start(&home, &args);
        up.wait_for("invite a friend's box", WITHIN);
        Hub { home, up }
    }

    /// `quloud invite NAME [extra]` → the invite line.
    fn invite(&self, name: &str, extra: &[&str]) -> String {
        let out = run(&self.home, &[&["invite", name], extra].concat());
        assert!(out.status.success(), "invite: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout.lines().find(|l| l.starts_with("QI1-")).expect("an invite line").to_string()
    }

    fn members(&self) -> serde_json::Value {
        let out = run(&self.home, &["members", "--json"]);
        assert!(out.status.success(), "members: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn hub_key(&self) -> NodeId {
        let bytes = std::fs::read(self.home.join("hub/hub.key")).unwrap();
        quloud::domain::identity::NodeIdentity::from_bytes(&bytes.try_into().unwrap()).id()
    }
}

fn run(home: &Path, args: &[&str]) -> Output {
    quloud(home).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A join that must fail with `expect` in one line and leave `home` without a house.
fn refused_join(home: &Path, invite: &str, expect: &str) {
    let out = run(home, &["join", invite, "--capacity", "1GiB"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "join should fail: {}", text(&out));
    let errors: Vec<_> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains(expect), "{expect:?} in {err}");
    assert!(!home.join("house").exists(), "a refused join wrote {}", home.join("house").display());
}

fn join(hub: &Hub, dir: &Path, name: &str) -> (PathBuf, Up) {
    let home = dir.join(name);
    let invite = hub.invite(name, &[]);
    let out = run(&home, &["join", &invite, "--capacity", "1GiB"]);
    assert!(out.status.success(), "join {name}: {}", text(&out));
    let mut up = Up::start(&home, &["--house"]);
    up.wait_for("is up: nats-server at", WITHIN);
    (home, up)
}

fn house_port(home: &Path) -> u16 {
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("house/house.json")).unwrap()).unwrap();
    cfg["port"].as_u64().unwrap() as u16
}

fn check_from(home: &Path, replicas: usize) -> Output {
    let url = format!("nats://127.0.0.1:{}", house_port(home));
    let r = replicas.to_string();
    let args = ["check", "--nats", &url, "--js-domain", "hub", "--replicas", &r, "--size", "2MiB"];
    run(home, &args)
}

fn stored_bodies(home: &Path) -> usize {
    let dir = home.join("house/node");
    fn count(d: &Path) -> usize {
        std::fs::read_dir(d).map_or(0, |es| {
            es.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        usize::from(e.metadata().map_or(0, |m| m.len()) > 4096)
                    }
                })
                .sum()
        })
    }
    count(&dir)
}

#[test]
fn houses_join_once_store_across_leaf_links_and_a_revoked_house_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path());
    let mut houses: Vec<(PathBuf, Up)> =
        ["alice", "bob", "carol"].iter().map(|n| join(&hub, tmp.path(), n)).collect();

    // Spent, expired, forged and mistyped invites: one line, nothing written.
    let spent = hub.invite("dave", &[]);
    assert!(run(&tmp.path().join("dave"), &["join", &spent, "--capacity", "1GiB"]).status.success());
    refused_join(&tmp.path().join("eve"), &spent, "no unused invite");
    let short = hub.invite("frank", &["--expires", "1s"]);
    let expires_at = Invite::decode(&short).unwrap().expires_at;
    poll_until(WITHIN, Duration::from_millis(100), "the invite to expire", || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() > expires_at
    });
    refused_join(&tmp.path().join("frank"), &short, "expired");
    let mut forged = Invite::decode(&hub.invite("gina", &[])).unwrap();
    forged.secret[0] ^= 1;
    refused_join(&tmp.path().join("gina"), &forged.encode(), "no unused invite");
    let good = hub.invite("hal", &[]);
    let mut typo: Vec<char> = good.chars().collect();
    typo[20] = if typo[20] == 'A' { 'B' } else { 'A' };
    refused_join(&tmp.path().join("hal"), &typo.into_iter().collect::<String>(), "mistyped");

    // From alice's leaf, three replicas: alice's node and the nodes of bob and carol, whose
    // acks come back over their leaf links to the hub.
    // Each join restarted the hub's nats-server: the leaves reconnect within seconds.
    let mut out = check_from(&houses[0].0, 3);
    poll_until(WITHIN, Duration::from_millis(500), "a check through alice's leaf", || {
        out = check_from(&houses[0].0, 3);
        out.status.success()
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains("on 3 nodes"), "{}", text(&out));
    for (home, _) in &houses {
        assert!(stored_bodies(home) > 0, "{} stored nothing", home.display());
    }

    // The hub lists the houses; each node's certificate verifies under the hub's key.
    let hub_key = hub.hub_key();
    poll_until(WITHIN, Duration::from_millis(500), "every house seen by the hub", || {
        let m = hub.members();
        m["houses"].as_array().unwrap().iter().filter(|h| h["last_seen"].as_u64() > Some(0)).count() == 3
    });
    let members = hub.members();
    for h in members["houses"].as_array().unwrap() {
        let cert: HouseCert = serde_json::from_value(h["nodes"][0].clone()).unwrap();
        assert!(cert.verify(&hub_key).is_some(), "certificate of {h}");
        assert_eq!(cert.house.as_str(), h["name"].as_str().unwrap());
    }

    // Revoked: carol's leaf is cut off and refused when it reconnects; the others go on.
    let out = run(&hub.home, &["revoke", "carol"]);
    assert!(out.status.success(), "revoke: {}", text(&out));
    let carol_log = houses[2].0.join("house/nats.log");
    wait_until(WITHIN, "carol's leaf refused", || {
        std::fs::read_to_string(&carol_log).unwrap_or_default().contains("Authorization Violation")
    });
    poll_until(WITHIN, Duration::from_millis(500), "a check from alice with alice and bob", || {
        check_from(&houses[0].0, 2).status.success()
    });
    let members = hub.members();
    let carol = members["houses"].as_array().unwrap().iter().find(|h| h["name"] == "carol").unwrap().clone();
    assert_eq!(carol["revoked"], true);
    houses.truncate(0);
    drop(hub.up);
}

/// The same path across network namespaces: the hub in one, each house in its own, joined by
/// veth pairs and a bridge. A house whose link is down is not seen; a check from one house is
/// stored on the nodes of three houses over their leaf links to the hub's address.
#[test]
fn houses_in_their_own_network_namespaces_reach_each_other_through_the_hub() {
    use common::netns::{Proc, TestBed};
    require_tool("nats-server", "apt-get install -y nats-server");
    require_tool("openssl", "apt-get install -y openssl");
    let tmp = tempfile::tempdir().unwrap();
    let bed = TestBed::new(4);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_quloud"));
    let q = |i: usize, home: &Path, args: &[&str]| {
        let mut c = bed.command(i, &exe);
        c.arg("--home").arg(home).args(args);
        c
    };
    let hub_home = tmp.path().join("hub");
    let public = bed.addr(0);
    let mut hub =
        Proc::spawn(q(0, &hub_home, &["up", "--hub", "--public", &public]), tmp.path().join("hub.log"));
    hub.wait_for("invite a friend's box", WITHIN);
    let mut houses = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let out = q(0, &hub_home, &["invite", name]).output().unwrap();
        assert!(out.status.success(), "invite: {}", text(&out));
        let invite =
            String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("QI1-")).unwrap().to_string();
        let home = tmp.path().join(name);
        let out = q(i + 1, &home, &["join", &invite, "--capacity", "1GiB"]).output().unwrap();
        assert!(out.status.success(), "join {name}: {}", text(&out));
        let mut up = Proc::spawn(q(i + 1, &home, &["up", "--house"]), tmp.path().join(format!("{name}.log")));
        up.wait_for("is up: nats-server at", WITHIN);
        houses.push((home, up));
    }
    let members = || -> serde_json::Value {
        let out = q(0, &hub_home, &["members", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let seen = |m: &serde_json::Value| {
        m["houses"].as_array().unwrap().iter().filter(|h| h["last_seen"].as_u64() > Some(0)).count()
    };
    poll_until(WITHIN, Duration::from_millis(500), "the hub to see the three houses", || {
        seen(&members()) == 3
    });

    let url = format!("nats://127.0.0.1:{}", house_port(&houses[0].0));
    let check = ["check", "--nats", &url, "--js-domain", "hub", "--replicas", "3", "--size", "2MiB"];
    let out = q(1, &houses[0].0, &check).output().unwrap();
    assert!(out.status.success(), "check from alice's namespace: {}", text(&out));
    for (home, _) in &houses {
        assert!(stored_bodies(home) > 0, "{} stored nothing", home.display());
    }

    // Carol's link down: her leaf connection drops; back up, she reconnects by herself.
    bed.link(3, false);
    let carol_log = houses[2].0.join("house/nats.log");
    wait_until(Duration::from_secs(60), "carol's leaf connection to drop", || {
        std::fs::read_to_string(&carol_log).unwrap_or_default().contains("Leafnode connection closed")
    });
    bed.link(3, true);
    poll_until(Duration::from_secs(60), Duration::from_millis(500), "carol back", || {
        q(1, &houses[0].0, &check).output().unwrap().status.success()
    });
    drop(houses);
    drop(hub);
}

/// What one house's files say: its node id, its leaf server's port and its hub credentials.
struct HouseFacts {
    node: String,
    port: u16,
    user: String,
    password: String,
}

fn facts(home: &Path) -> HouseFacts {
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("house/house.json")).unwrap()).unwrap();
    let leaf = std::fs::read_to_string(home.join("house/leaf.conf")).unwrap();
    let url = leaf.split("tls://").nth(1).and_then(|r| r.split('@').next()).expect("a leaf url");
    let (user, password) = url.split_once(':').expect("user:password");
    HouseFacts {
        node: cfg["cert"]["node"].as_str().unwrap().to_string(),
        port: cfg["port"].as_u64().unwrap() as u16,
        user: user.to_string(),
        password: password.to_string(),
    }
}

/// A client whose server errors (permissions violations) arrive on the receiver.
async fn connect_watched(
    url: &str,
    opts: async_nats::ConnectOptions,
) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = opts
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .expect("connect");
    (client, rx)
}

/// Waits for the server's permissions violation naming `subject` (or a subject ending so).
async fn violation(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    let e = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("no permissions violation for {subject}"))
        .expect("the client is open");
    assert!(e.to_lowercase().contains("permissions violation"), "{subject}: {e}");
    assert!(e.contains(subject), "expected the violation for {subject}, got {e}");
}

/// The next message on `sub` within 10 s, if any.
async fn next_within(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), sub.next()).await.ok().flatten()
}

/// Publishes `marker` on `publisher` until `sub` receives it (interest has crossed the links);
/// then publishes `probe` followed by `marker` once more and returns what `sub` and
/// `probe_sub` got before that second marker: the probe, if it was delivered.
async fn delivered_before_marker(
    publisher: &async_nats::Client,
    (marker, sub): (&str, &mut async_nats::Subscriber),
    (probe, probe_sub): (&str, &mut async_nats::Subscriber),
) -> bool {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        publisher.publish(marker.to_string(), "first".into()).await.unwrap();
        publisher.flush().await.unwrap();
        match tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            Ok(Some(_)) => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "{marker} never crossed the leaf link"),
        }
    }
    // Drain markers still on their way.
    while tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_ok() {}
    publisher.publish(probe.to_string(), "probe".into()).await.unwrap();
    publisher.publish(marker.to_string(), "second".into()).await.unwrap();
    publisher.flush().await.unwrap();
    let m = next_within(sub).await.expect("the second marker");
    assert_eq!(&m.payload[..], b"second");
    tokio::time::timeout(Duration::from_millis(50), probe_sub.next()).await.is_ok()
}

/// The credentials a house receives at join allow exactly the subjects a house needs: through
/// its leaf link it receives nothing addressed to another house's node and sends nothing
/// outside its list; logged in with them directly at the hub, subscribing to another node's
/// subjects, to any vault's acks or to everything, and publishing outside the list, are
/// permissions violations. A check across the houses (store, acks, gets, audits, deletes, all
/// over the leaf links) still works.
#[test]
fn a_house_credential_allows_exactly_the_subjects_a_house_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path());
    let houses: Vec<(PathBuf, Up)> = ["alice", "bob"].iter().map(|n| join(&hub, tmp.path(), n)).collect();
    let mut out = check_from(&houses[0].0, 2);
    poll_until(WITHIN, Duration::from_millis(500), "a check from alice with alice and bob", || {
        out = check_from(&houses[0].0, 2);
        out.status.success()
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains("on 2 nodes"), "{}", text(&out));
    let (alice, bob) = (facts(&houses[0].0), facts(&houses[1].0));
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hub.home.join("hub/hub.json")).unwrap()).unwrap();
    let hub_url = format!("tls://127.0.0.1:{}", settings["port"]);
    let ca = hub.home.join("hub/ca.pem");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let admin = async_nats::ConnectOptions::with_user_and_password(
            "hub".into(),
            settings["password"].as_str().unwrap().into(),
        )
        .add_root_certificates(ca.clone());
        let (admin, _) = connect_watched(&hub_url, admin).await;
        let at_alice = format!("nats://127.0.0.1:{}", alice.port);
        let (local, _) = connect_watched(&at_alice, async_nats::ConnectOptions::new()).await;

        // Over alice's leaf link: her own node's subject arrives, bob's does not.
        let own = format!("quloud.v1.node.{}.probe", alice.node);
        let others = format!("quloud.v1.node.{}.probe", bob.node);
        let mut own_sub = local.subscribe(own.clone()).await.unwrap();
        let mut others_sub = local.subscribe(others.clone()).await.unwrap();
        local.flush().await.unwrap();
        let leaked = delivered_before_marker(&admin, (&own, &mut own_sub), (&others, &mut others_sub)).await;
        assert!(!leaked, "alice's leaf received a message for bob's node");

        // From alice's leaf into the hub: a subject of her list arrives, one outside it does not.
        let allowed = format!("quloud.v1.node.{}.probe2", bob.node);
        let outside = "quloud.v1.outside".to_string();
        let mut allowed_sub = admin.subscribe(allowed.clone()).await.unwrap();
        let mut outside_sub = admin.subscribe(outside.clone()).await.unwrap();
        admin.flush().await.unwrap();
        let leaked =
            delivered_before_marker(&local, (&allowed, &mut allowed_sub), (&outside, &mut outside_sub)).await;
        assert!(!leaked, "alice's leaf published outside her list");

        // Alice's credentials used directly at the hub.
        let as_alice =
            async_nats::ConnectOptions::with_user_and_password(alice.user.clone(), alice.password.clone())
                .add_root_certificates(ca.clone());
        let (client, mut errors) = connect_watched(&hub_url, as_alice).await;
        for denied in [format!("quloud.v1.node.{}.>", bob.node), "quloud.v1.ack.>".into(), ">".into()] {
            let _sub = client.subscribe(denied.clone()).await.unwrap();
            client.flush().await.unwrap();
            violation(&mut errors, &denied).await;
        }
        // (The hub maps its domain's API prefix before it checks: the violation names `$JS.API.…`.)
        for (denied, named) in [
            ("quloud.v1.outside", "quloud.v1.outside"),
            ("$JS.hub.API.STREAM.DELETE.QULOUD_ACKS_V1", "API.STREAM.DELETE.QULOUD_ACKS_V1"),
        ] {
            client.publish(denied.to_string(), "x".into()).await.unwrap();
            client.flush().await.unwrap();
            violation(&mut errors, named).await;
        }
        // Her own node's subjects are hers: no violation before the next denied one.
        let _own = client.subscribe(format!("quloud.v1.node.{}.>", alice.node)).await.unwrap();
        client.publish("quloud.v1.outside2".to_string(), "x".into()).await.unwrap();
        client.flush().await.unwrap();
        violation(&mut errors, "quloud.v1.outside2").await;
    });
    drop(houses);
    drop(hub.up);
}

/// `quloud status --json` of the vault in `home`.
fn status(home: &Path) -> serde_json::Value {
    let out = run(home, &["status", "--json"]);
    assert!(out.status.success(), "status: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_of(home: &Path) -> String {
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("house/house.json")).unwrap()).unwrap();
    cfg["cert"]["node"].as_str().unwrap().to_string()
}

/// Four houses, one owner (alice). With only bob and carol besides her own house, her chunks
/// stay pending and `quloud status` says why; a node with no certificate and one with a forged
/// certificate change nothing; once dave joins, every chunk has its three replicas in bob's,
/// carol's and dave's houses, none in alice's and none on the uncertified node.
#[test]
fn replicas_go_to_three_other_houses_and_wait_until_there_are_three() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path());
    // Alice's vault key exists before she joins: her house's NATS user gets its owner subjects.
    init_home(&tmp.path().join("alice"));
    let mut houses: Vec<(PathBuf, Up)> =
        ["alice", "bob", "carol"].iter().map(|n| join(&hub, tmp.path(), n)).collect();
    let alice = houses[0].0.clone();
    let url = |home: &Path| format!("nats://127.0.0.1:{}", house_port(home));
    let mount = Mount::start(&alice, &tmp.path().join("alice-mp"), &url(&alice), &["--js-domain", "hub"]);
    assert!(mount.log_text().contains("each in another house than alice"), "{}", mount.log_text());
    poll_until(WITHIN, Duration::from_millis(500), "alice to see bob and carol", || {
        status(&alice)["placement"]["houses_reachable"].as_u64() == Some(2)
    });
    std::fs::write(mount.path("photos.bin"), bytes(20 << 20, 11)).unwrap();
    let mut s = status(&alice);
    poll_until(WITHIN, Duration::from_millis(500), "the file's chunks queued", || {
        s = status(&alice);
        s["chunks"].as_u64() > Some(0) && s["pending"] == s["chunks"]
    });
    let waiting = s["placement"]["waiting"].as_str().unwrap_or_default().to_string();
    assert!(waiting.starts_with("2 other houses reachable, 3 replicas wanted"), "{s}");
    let out = run(&alice, &["status"]);
    assert!(
        text(&out).contains("uploads wait: 2 other houses reachable, 3 replicas wanted"),
        "{}",
        text(&out)
    );

    // A node with no certificate of the hub, and a certificate for it that the hub's key did
    // not sign, listed by the hub as a house of its own. (A node of its own behind bob's leaf
    // would not even be served: bob's NATS user allows bob's node alone.)
    let mallory = quloud::domain::identity::NodeIdentity::generate().id();
    let forger = quloud::domain::identity::NodeIdentity::generate();
    let zed: quloud::domain::house::HouseName = "zed".parse().unwrap();
    let forged = HouseCert::issue(&forger, &zed, &mallory, 1);
    let register = quloud::adapters::hub::RegisterFile::lock(&hub.home.join("hub")).unwrap();
    let mut r = register.load().unwrap();
    r.houses.iter_mut().find(|h| h.name.as_str() == "carol").unwrap().nodes.push(forged);
    register.save(&r).unwrap();
    drop(register);
    wait_until(WITHIN, "alice to reject the forged certificate", || {
        mount.log_text().contains("do not verify under its key")
    });
    let s = status(&alice);
    assert_eq!(s["placement"]["houses_reachable"].as_u64(), Some(2), "{s}");
    assert_eq!(s["durable"].as_u64(), Some(0), "{s}");

    // Dave joins: three other houses, and the chunks become durable there.
    houses.push(join(&hub, tmp.path(), "dave"));
    let mut s = status(&alice);
    poll_until(Duration::from_secs(180), Duration::from_millis(500), "every chunk durable", || {
        s = status(&alice);
        s["pending"].as_u64() == Some(0) && s["durable"] == s["chunks"]
    });
    assert!(s["placement"]["waiting"].is_null(), "{s}");
    let chunks = s["chunks"].as_u64().unwrap();
    let per_node: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(s["per_node"].clone()).unwrap();
    let others: std::collections::BTreeMap<String, u64> =
        houses[1..].iter().map(|(home, _)| (node_of(home), chunks)).collect();
    assert_eq!(per_node, others, "one replica of every chunk in each other house: {s}");
    assert!(!per_node.contains_key(&node_of(&alice)), "a replica in the owner's own house");
    assert!(!per_node.contains_key(&mallory.to_hex()), "a replica counted on an uncertified node");
    drop(mount);
    houses.truncate(0);
    drop(hub.up);
}

//! Quloud on a NATS cluster (docs/DESIGN.md §9, docs/OPERATIONS.md): three nats-servers on loopback with
//! JetStream R3, four storage nodes and a mount, all given every server's URL. Stopping the
//! server the mount is connected to in the middle of an upload loses nothing.

mod common;

use common::cluster::Cluster;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const STREAMS: [&str; 4] = ["QULOUD_SLOTS_V1", "QULOUD_BODIES_V1", "QULOUD_ACKS_V1", "QULOUD_ROOTS_V1"];

/// Waits until every Quloud stream has three replicas, all current and none offline.
async fn wait_converged(urls: &str, within: Duration) {
    let servers: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(servers).await.expect("connect to the cluster");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + within;
    loop {
        let mut report = Vec::new();
        for name in STREAMS {
            let info = match js.get_stream(name).await {
                Ok(mut s) => s.info().await.map(|i| i.cluster.clone()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match info {
                Ok(Some(c)) => {
                    let healthy = c.leader.is_some()
                        && c.replicas.len() == 2
                        && c.replicas.iter().all(|p| p.current && !p.offline);
                    if !healthy {
                        report.push(format!("{name}: leader {:?}, replicas {:?}", c.leader, c.replicas));
                    }
                }
                other => report.push(format!("{name}: {other:?}")),
            }
        }
        if report.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "the cluster did not converge within {within:?}: {report:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_server_mid_upload_loses_nothing_and_the_cluster_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&dir.path().join("nats"), 3);
    let urls = cluster.urls();
    let r3 = ["--js-replicas", "3"];
    let _nodes: Vec<Node> =
        (0..4).map(|i| Node::start_with(&urls, &dir.path().join(format!("node-{i}")), "2GiB", &r3)).collect();
    let mut m = Mount::new_vault(dir.path(), "v", &urls, &r3);
    wait_converged(&urls, Duration::from_secs(30)).await;

    let data = bytes(200 << 20, 6);
    let path = m.path("big.bin");
    let written = data.clone();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&written).unwrap();
        f.sync_all().unwrap();
    })
    .await
    .unwrap();

    // Mid-upload: some chunks durable, more pending. Stop the server the mount talks to.
    let home = m.home.clone();
    let before = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = status(&home);
            if s.durable > 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "no chunk became durable: {}", s.json);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let victim = cluster.server_of("quloud-owner").expect("the mount is connected to one of the servers");
    cluster.servers[victim].kill9();
    assert!(before.pending > 0, "the upload finished before a server could be stopped: {}", before.json);
    eprintln!("stopped server s{victim} with {} chunks durable, {} pending", before.durable, before.pending);

    let home = m.home.clone();
    let after = tokio::task::spawn_blocking(move || wait_durable_within(&home, Duration::from_secs(300)))
        .await
        .unwrap();
    assert_eq!(after.degraded, 0, "{}", after.json);
    assert!(
        m.log_text().contains("lost the NATS connection"),
        "the mount never noticed its server stopping:\n{}",
        m.log_text()
    );

    // Read back through a fresh mount: the caches are empty, every chunk comes from the nodes.
    m.remount();
    let path = m.path("big.bin");
    let back = tokio::task::spawn_blocking(move || std::fs::read(path)).await.unwrap().unwrap();
    assert!(back == data, "the file does not read back identical after the server stopped");

    // The stopped server comes back and catches up: every stream has three current replicas.
    cluster.servers[victim].restart();
    cluster.wait_healthy(victim, Duration::from_secs(60));
    wait_converged(&urls, Duration::from_secs(60)).await;
    m.unmount();
}

/// A NAS runs a leaf nats-server without JetStream that connects to the hub; its node and its
/// owner connect to the leaf and reach the hub's JetStream through its domain (`--js-domain`).
#[test]
fn a_nas_behind_a_leaf_node_stores_and_reads_through_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let (hub_port, leaf_link, leaf_port) = (ports[0], ports[1], ports[2]);
    let hub_conf = format!(
        "server_name: hub\nhost: 127.0.0.1\nport: {hub_port}\n\
         jetstream {{\n  store_dir: \"{}\"\n  domain: hub\n}}\n\
         accounts {{\n  QULOUD {{\n    jetstream: enabled\n    users: [ {{ user: nas1, password: nas1-secret }} ]\n  }}\n}}\n\
         leafnodes {{\n  host: 127.0.0.1\n  port: {leaf_link}\n}}\n",
        dir.path().join("hub/js").display()
    );
    let _hub = Nats::with_config(&dir.path().join("hub"), hub_port, &hub_conf);
    let leaf_conf = format!(
        "server_name: nas1\nhost: 127.0.0.1\nport: {leaf_port}\n\
         accounts {{\n  QULOUD {{ users: [ {{ user: local, password: local-secret }} ] }}\n}}\n\
         leafnodes {{\n  remotes = [ {{ urls: [\"nats-leaf://nas1:nas1-secret@127.0.0.1:{leaf_link}\"], account: QULOUD }} ]\n}}\n"
    );
    let leaf = Nats::with_config(&dir.path().join("leaf"), leaf_port, &leaf_conf);
    wait_until(Duration::from_secs(10), "the leaf node to connect to the hub", || {
        leaf.log().contains("Leafnode connection created")
    });
    let url = format!("nats://local:local-secret@127.0.0.1:{leaf_port}");
    let domain = ["--js-domain", "hub"];
    let _nodes: Vec<Node> = (0..3)
        .map(|i| Node::start_with(&url, &dir.path().join(format!("node-{i}")), "1GiB", &domain))
        .collect();
    let out = quloud(&dir.path().join("h"))
        .args(["check", "--nats", &url, "--js-domain", "hub", "--size", "8MiB", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quloud check through the leaf failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| {
        text.split(&format!("\"{k}\":")).nth(1).and_then(|r| r.split([',', '}']).next()).map(str::to_string)
    };
    assert_eq!(field("nodes").as_deref(), Some("3"), "{text}");
    assert_eq!(field("audits_passed"), field("audits"), "{text}");
    assert!(!text.contains("local-secret"), "the password leaked into the output: {text}");
}

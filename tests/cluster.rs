//! Quloud on a NATS cluster (DESIGN §9, docs/OPERATIONS.md): three nats-servers on loopback with
//! JetStream R3, four storage nodes and a mount, all given every server's URL. Stopping the
//! server the mount is connected to in the middle of an upload loses nothing.

mod common;

use common::cluster::Cluster;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const STREAMS: [&str; 3] = ["QULOUD_STORE_V1", "QULOUD_ACKS_V1", "QULOUD_ROOTS_V1"];

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

//! A friend's box with a wrong clock, end to end: a real nats-server, three real `quloud node`
//! processes (one running 600 s ahead), a real FUSE mount with N=3, and `quloud status` and
//! `quloud audit` as a user runs them.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Ten minutes, in ms: the skewed node's clock runs this far ahead.
const AHEAD_MS: &str = "600000";

#[test]
fn a_node_600_s_ahead_is_read_around_named_in_status_and_passes_audits() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let node = |i: usize, flags: &[&str]| {
        Node::start_with(&nats.url(), &dir.path().join(format!("node-{i}")), "1GiB", flags)
    };
    // N=3 on three nodes: every chunk has a replica on the skewed node.
    let nodes = [node(0, &[]), node(1, &[]), node(2, &["--test-clock-offset-ms", AHEAD_MS])];
    let skewed = nodes[2].id;
    let mut m = Mount::new_vault(dir.path(), "owner", &nats.url(), &["--replicas", "3"]);
    let files: Vec<(String, Vec<u8>)> =
        (0..30).map(|i| (format!("small/{i:02}.txt"), bytes(3_000 + i * 97, i as u64))).collect();
    std::fs::create_dir_all(m.path("small")).unwrap();
    for (name, data) in &files {
        std::fs::write(m.path(name), data).unwrap();
        std::fs::File::open(m.path(name)).unwrap().sync_all().unwrap();
    }
    let s = wait_durable(&m.home);
    assert_eq!(s.degraded, 0, "{}", s.json);

    // Cold reads: about a third of the chunks name the skewed node first.
    m.remount();
    let started = Instant::now();
    for (name, data) in &files {
        let got = std::fs::read(m.path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"));
        assert!(got == *data, "{name} differs");
    }
    let took = started.elapsed();
    let s = status(&m.home);
    assert!(s.json.contains("\"get_timeouts\":0"), "a get waited out the skewed node: {}", s.json);
    assert!(took < Duration::from_secs(10), "30 small files took {took:?} to read cold");

    // Every replica, the skewed node's included, passes its audit (requests carry its time).
    let out = quloud(&m.home).args(["audit", "--now", "--json"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the audit should pass with a skewed node: {text}");
    for key in ["\"failed\":0", "\"not_found\":0", "\"silent\":0"] {
        assert!(text.contains(key), "{key} expected: {text}");
    }

    // Status names the cause, in JSON and in text, rounded to seconds.
    let s = status(&m.home);
    assert!(s.json.contains(&format!("\"node\":\"{skewed}\",\"offset_ms\":")), "{}", s.json);
    assert!(s.json.contains("clock is 600 s ahead"), "{}", s.json);
    let others = [nodes[0].id, nodes[1].id];
    assert!(
        others.iter().all(|n| !s.json.contains(&format!("\"node\":\"{n}\",\"offset_ms\""))),
        "{}",
        s.json
    );
    let out = quloud(&m.home).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("clock is 600 s ahead") && text.contains("NTP"), "{text}");
    assert!(m.log_text().contains("clock is 600 s ahead"), "the mount's log names the cause");
}

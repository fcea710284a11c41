//! The metrics and health endpoints of real `quloud node` and `quloud mount` processes, scraped
//! over a plain `std::net::TcpStream`: counters move with real traffic, every line is valid
//! Prometheus text format, `/healthz` follows the broker, and hostile HTTP leaves the endpoint
//! answering.

mod common;

use common::*;
use futures::StreamExt;
use quloud::adapters::nats::node_subject;
use quloud::domain::proof::Purpose;
use quloud::domain::unix_ms;
use quloud::domain::wire::ProvenRequest;
use quloud::ports::fabric::{ChunkFabric, Publish, StoreGoal};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Sends raw bytes and reads the whole response (the server closes after one response).
/// Returns the status code (0 if the connection closed without one) and the body.
fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_raw(addr, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
}

/// Scrapes `/metrics`, checks that it is valid text format and returns its samples.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    validate_exposition(&body).unwrap_or_else(|e| panic!("invalid exposition format: {e}\n{body}"));
    samples(&body)
}

fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), parse_value(v).unwrap()))
        .collect()
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

fn is_name(s: &str, label: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (!label && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut cs = s.chars();
    cs.next().is_some_and(|c| ok(c, true)) && cs.all(|c| ok(c, false))
}

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;

/// Parses `{k="v",…}`; returns the pairs and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut pairs = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((pairs, r));
        }
        let (name, r) = rest.split_once("=\"").ok_or(format!("no =\" in {rest}"))?;
        if !is_name(name, true) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        pairs.push((name.to_string(), value));
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Checks the text exposition format 0.0.4 as Prometheus parses it, plus the conventions:
/// one HELP and one TYPE per family before its samples, counters end in `_total`, histogram
/// buckets ascend, are cumulative and end in `+Inf` = `_count`.
fn validate_exposition(body: &str) -> Result<(), String> {
    if !body.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = HashSet::new();
    let mut seen = HashSet::new();
    let mut buckets: HashMap<String, (f64, f64)> = HashMap::new();
    let mut counts = HashMap::new();
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, text) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !is_name(name, false) {
                return Err(at("bad metric name".into()));
            }
            match kind {
                Some("HELP") if helped.insert(name.to_string()) => {}
                Some("TYPE") if !types.contains_key(name) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&text) {
                        return Err(at("unknown type".into()));
                    }
                    if text == "counter" && !name.ends_with("_total") {
                        return Err(at("counter without _total".into()));
                    }
                    types.insert(name.to_string(), text.to_string());
                }
                _ => return Err(at("repeated or unknown comment".into())),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value = rest.strip_prefix(' ').and_then(parse_value).ok_or_else(|| at("bad value".into()))?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            .unwrap_or(name);
        if !types.contains_key(family) || !helped.contains(family) {
            return Err(at(format!("sample of {family} before its HELP and TYPE")));
        }
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(at("duplicate sample".into()));
        }
        let others: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        let series = format!("{family}{others:?}");
        if name.ends_with("_bucket") && family != name {
            let le = labels.iter().find(|(k, _)| k == "le").ok_or_else(|| at("bucket without le".into()))?;
            let le = parse_value(&le.1).ok_or_else(|| at("bad le".into()))?;
            let prev = buckets.insert(series.clone(), (le, value)).unwrap_or((f64::NEG_INFINITY, 0.0));
            if le <= prev.0 || value < prev.1 {
                return Err(at("buckets not ascending and cumulative".into()));
            }
        } else if name.ends_with("_count") && family != name {
            counts.insert(series, value);
        }
    }
    for (series, (le, total)) in &buckets {
        if *le != f64::INFINITY || counts.get(series) != Some(total) {
            return Err(format!("{series}: last bucket must be +Inf and equal _count"));
        }
    }
    Ok(())
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key} in the scrape"))
}

/// Polls the scrape until `cond` holds; returns the last scrape.
fn scrape_until(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    cond: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + within;
    loop {
        let m = scrape(addr);
        if cond(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last scrape: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_health(addr: SocketAddr, want: u16, within: Duration) -> String {
    let mut last = (0, String::new());
    poll_until(within, Duration::from_millis(100), &format!("/healthz to answer {want}"), || {
        last = get(addr, "/healthz");
        last.0 == want
    });
    last.1
}

fn now() -> u64 {
    unix_ms(SystemTime::now())
}

/// Sends a request to a node subject with a reply inbox (nodes ignore requests without one)
/// and waits briefly for replies.
async fn poke(client: &async_nats::Client, subject: String, payload: Vec<u8>) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish_with_reply(subject, inbox, payload.into()).await.unwrap();
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_counts_traffic_and_refusals_and_survives_hostile_http() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(&tmp.path().join("nats"));
    let addr = free_addr();
    let flag = addr.to_string();
    let node = Node::start_with(&nats.url(), &tmp.path().join("node"), "1GiB", &["--metrics", &flag]);
    assert!(node.log().contains(&format!("metrics at http://{addr}/metrics")), "{}", node.log());
    assert_eq!(wait_health(addr, 200, Duration::from_secs(10)), "ok\n");

    // Real traffic: two chunks stored and read back with valid proofs.
    let keys = vault(40);
    let owner = owner(&keys, test_options(&nats.url())).await;
    let chunks: Vec<_> = (0..2).map(|i| keys.seal(&bytes(80_000, 40 + i))).collect();
    for c in &chunks {
        let p = Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext };
        owner.store(p, StoreGoal::fresh(1)).await.unwrap();
    }
    let items: Vec<_> = chunks.iter().map(|c| (c.addr, keys.proof_secret(&c.addr))).collect();
    let got = owner.get(&items, &[node.id]).await.unwrap();
    assert_eq!(got.len(), 2);
    // A forged proof (a stranger's secret) for a held chunk, and garbage.
    let client = owner.client().clone();
    let forged = ProvenRequest::build(
        Purpose::Get,
        node.id,
        now(),
        0,
        &[(chunks[0].addr, vault(99).proof_secret(&chunks[0].addr))],
    );
    poke(&client, node_subject(&node.id, "get"), forged.encode()).await;
    poke(&client, node_subject(&node.id, "get"), bytes(300, 7)).await;

    let m = scrape_until(addr, Duration::from_secs(20), "the counters to move", |m| {
        m.get("quloud_node_chunks_stored_total") >= Some(&2.0)
            && m.get("quloud_node_chunks_served_total") >= Some(&2.0)
            && m.get("quloud_node_refusals_total{reason=\"bad_proof\"}") >= Some(&1.0)
            && m.get("quloud_node_refusals_total{reason=\"malformed\"}") >= Some(&1.0)
    });
    assert_eq!(value(&m, "quloud_node_chunks"), 2.0);
    assert!(value(&m, "quloud_node_used_bytes") >= 160_000.0);
    assert_eq!(value(&m, "quloud_node_capacity_bytes"), (1u64 << 30) as f64);
    assert!(value(&m, "quloud_node_requests_total{op=\"store\"}") >= 2.0);
    assert!(value(&m, "quloud_node_requests_total{op=\"get\"}") >= 3.0);
    assert!(value(&m, "quloud_node_request_duration_seconds_count{op=\"get\"}") >= 3.0);
    assert_eq!(value(&m, "quloud_node_refusals_total{reason=\"rate_limited\"}"), 0.0);
    assert_eq!(value(&m, "quloud_node_broker_connected"), 1.0);
    let version = format!("quloud_build_info{{version=\"{}\",role=\"node\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&m, &version), 1.0);
    assert!(value(&m, "quloud_uptime_seconds") >= 0.0);

    hostile_http(addr);

    // The health check follows the broker.
    nats.kill9();
    let why = wait_health(addr, 503, Duration::from_secs(20));
    assert!(why.contains("broker"), "{why}");
    assert_eq!(value(&scrape(addr), "quloud_node_broker_connected"), 0.0);
}

/// Garbage, oversized, wrong-method and slow requests get short errors (or a closed
/// connection), and the endpoint keeps answering throughout.
fn hostile_http(addr: SocketAddr) {
    // A slow client holds a connection open without finishing its request head.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    let slow_since = Instant::now();

    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/metrics?x=1").0, 200);
    assert_eq!(http_raw(addr, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    let (status, body) = http_raw(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for i in 0..400 {
        huge.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    assert_eq!(http_raw(addr, &huge).0, 431, "oversized head");
    // Binary junk without a line feed, so it never ends a head.
    let endless: Vec<u8> = bytes(20_000, 1).into_iter().map(|b| if b == b'\n' { 0 } else { b }).collect();
    assert_eq!(http_raw(addr, &endless).0, 431, "20 kB of binary junk, no head end");
    let mut junk = bytes(200, 2);
    junk.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http_raw(addr, &junk).0, 400, "binary junk with a head end");
    assert_eq!(http_raw(addr, b"GET\r\n\r\n").0, 400);
    assert_eq!(http_raw(addr, b"GET /metrics SPDY/9\r\n\r\n").0, 400);
    assert_eq!(http_raw(addr, b"\r\n\r\n").0, 400);
    let mut quiet = TcpStream::connect(addr).unwrap();
    quiet.shutdown(std::net::Shutdown::Write).unwrap();
    quiet.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut nothing = Vec::new();
    let _ = quiet.read_to_end(&mut nothing);
    assert!(nothing.is_empty(), "a client that sends nothing gets nothing");
    // Many connections at once, each sending half a request and closing.
    for _ in 0..40 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /he");
        }
    }
    wait_health(addr, 200, Duration::from_secs(3));
    scrape(addr);

    // The slow client is cut off after the read timeout (5 s) with 408.
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut out = Vec::new();
    let _ = slow.read_to_end(&mut out);
    let waited = slow_since.elapsed();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&out));
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(12), "cut off after {waited:?}");
    scrape(addr);
}

#[test]
fn a_node_refuses_a_public_metrics_address_without_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quloud"))
        .args(["node", "--nats", "nats://127.0.0.1:1", "--capacity", "1MiB", "--metrics", "0.0.0.0:0"])
        .arg("--data")
        .arg(tmp.path().join("n"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a loopback address") && err.contains("--metrics-public"), "{err}");
}

#[test]
fn a_mount_reports_its_queue_draining_and_cache_hits() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let flag = addr.to_string();
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &["--metrics", &flag]);
    assert_eq!(wait_health(addr, 200, Duration::from_secs(20)), "ok\n");

    let data = bytes(3 << 20, 50);
    std::fs::write(m.path("big"), &data).unwrap();
    let s = scrape_until(addr, Duration::from_secs(90), "the upload queue to drain", |s| {
        s.get("quloud_vault_upload_queue_chunks") == Some(&0.0)
            && s.get("quloud_vault_staged_files") == Some(&0.0)
            && s.get("quloud_vault_chunks{state=\"durable\"}") >= Some(&3.0)
    });
    assert_eq!(value(&s, "quloud_vault_upload_queue_bytes"), 0.0);
    assert_eq!(value(&s, "quloud_vault_chunks{state=\"pending\"}"), 0.0);
    assert!(value(&s, "quloud_vault_chunks_uploaded_total") >= 3.0);
    // Random data does not dedup: every chunk's ciphertext is uploaded once, and is no smaller.
    assert!(value(&s, "quloud_vault_uploaded_bytes_total") >= data.len() as f64);
    assert!(value(&s, "quloud_vault_files_chunked_total") >= 1.0);
    assert_eq!(value(&s, "quloud_vault_fabric_connected"), 1.0);
    assert_eq!(value(&s, "quloud_vault_replicas_wanted"), 3.0);

    // After a remount the caches are empty: the first read fetches from the fabric, and a
    // re-read (page cache dropped) is served from the chunk cache.
    m.remount();
    wait_health(addr, 200, Duration::from_secs(20));
    let before = scrape(addr);
    assert_eq!(value(&before, "quloud_vault_cache_hits_total"), 0.0);
    assert_eq!(value(&before, "quloud_vault_fabric_fetch_seconds_count"), 0.0);
    assert_eq!(std::fs::read(m.path("big")).unwrap(), data);
    let first = scrape(addr);
    let fetched = value(&first, "quloud_vault_fabric_fetch_seconds_count");
    assert!(fetched >= 3.0, "chunks fetched: {fetched}");
    assert!(value(&first, "quloud_vault_cache_misses_total") >= 3.0);
    assert!(value(&first, "quloud_vault_cache_bytes") >= data.len() as f64);
    {
        let f = std::fs::File::open(m.path("big")).unwrap();
        // SAFETY: posix_fadvise on a descriptor we hold open; it only drops clean cached pages.
        unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    assert_eq!(std::fs::read(m.path("big")).unwrap(), data);
    let again = scrape(addr);
    assert!(
        value(&again, "quloud_vault_cache_hits_total") > value(&before, "quloud_vault_cache_hits_total"),
        "no cache hit: {again:?}"
    );
    assert_eq!(
        value(&again, "quloud_vault_fabric_fetch_seconds_count"),
        fetched,
        "re-read went to the fabric"
    );
    assert_eq!(value(&again, "quloud_vault_fabric_fetch_failures_total"), 0.0);
    m.unmount();
}

#[test]
fn the_renderer_output_passes_the_validator_and_the_validator_catches_mistakes() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    validate_exposition(good).unwrap();
    for bad in [
        "a_total 1\n",                               // no HELP/TYPE
        "# HELP a A.\n# TYPE a counter\na 1\n",      // counter without _total
        "# HELP a A.\n# TYPE a gauge\na x\n",        // bad value
        "# HELP a A.\n# TYPE a gauge\na{b=\"1} 1\n", // unterminated label
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",   // duplicate
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
        "# HELP a A.\n# TYPE a gauge\na 1", // no final newline
    ] {
        assert!(validate_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

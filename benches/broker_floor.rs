//! The broker's floor for quorum-durable uploads: how long a real nats-server takes to move 1 GiB
//! of chunk bodies through Quloud's own stream layout to 3 storage nodes that do nothing else —
//! no hashing, no encryption, no disk, no signatures. The real upload does all of this plus that
//! work, so this is a lower bound on "time until 1 GiB is quorum-durable" on the same machine.
//!
//! Run: `cargo bench --bench broker_floor` (needs `nats-server` on PATH:
//! `apt-get install -y nats-server`). Env: `SIZE_MIB` (1024), `CHUNK_KIB` (660, the mean chunk
//! size the mount produces), `NODES` (3), `INFLIGHT` (32 chunks, the uploader's default).
//! Prints the wall time and the CPU seconds of nats-server and of this process (owner and nodes).

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use quloud::adapters::nats::{body_subject, ensure_streams, store_consumer, Layout, STORE_SUBJECT};
use quloud::domain::ids::Addr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .env("GOGC", std::env::var("GOGC").unwrap_or_else(|_| "400".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server ({e}): apt-get install -y nats-server"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker { child, port, _dir: dir }
}

/// A node that pulls store requests one at a time (as real nodes do), direct-gets each body,
/// answers with a tiny ack on core NATS, and acks the work-queue message. Nothing else.
async fn null_node(url: String, index: usize, concurrency: usize) {
    let client = async_nats::connect(&url).await.expect("node connects");
    let js = jetstream::new(client.clone());
    let streams = ensure_streams(&js, &Layout::default()).await.expect("streams");
    let consumer = store_consumer(&streams.store).await.expect("consumer");
    let bodies = Arc::new(streams.bodies);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        let (consumer, bodies, client) = (consumer.clone(), bodies.clone(), client.clone());
        tokio::spawn(async move {
            let Ok(mut batch) =
                consumer.fetch().max_messages(1).expires(Duration::from_secs(2)).messages().await
            else {
                return;
            };
            if let Some(Ok(msg)) = batch.next().await {
                // The slot names the body's subject; the ack goes to the chunk's ack subject.
                let subject = String::from_utf8_lossy(&msg.payload).to_string();
                match bodies.direct_get_last_for_subject(subject.as_str()).await {
                    Ok(body) => {
                        let reply = format!("floor.ack.{}", subject.rsplit('.').next().unwrap_or(""));
                        let ack = format!("{index}:{}", body.payload.len());
                        let _ = client.publish(reply, ack.into()).await;
                        let _ = msg.ack().await;
                    }
                    Err(_) => {
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Publishes one chunk's body once and its slots, waits for `replicas` acks, withdraws the body.
async fn store_one(
    client: async_nats::Client,
    js: jetstream::Context,
    body: bytes::Bytes,
    id: u64,
    replicas: usize,
) {
    let addr = Addr::of(&id.to_le_bytes());
    let mut acks = client.subscribe(format!("floor.ack.{addr}")).await.expect("subscribe");
    let subject = body_subject(&addr);
    js.publish(subject.clone(), body).await.expect("publish body").await.expect("body stored");
    for _ in 0..replicas {
        js.publish(STORE_SUBJECT, subject.clone().into())
            .await
            .expect("publish slot")
            .await
            .expect("slot stored");
    }
    for _ in 0..replicas {
        acks.next().await.expect("ack");
    }
    // Withdrawn once stored, as the owner does (an empty body replaces it).
    js.publish(subject, bytes::Bytes::new()).await.expect("withdraw body");
}

fn main() {
    let size = env_num("SIZE_MIB", 1024) << 20;
    let chunk = env_num("CHUNK_KIB", 660) << 10;
    let nodes = env_num("NODES", 3);
    let inflight = env_num("INFLIGHT", 32);
    let broker = start_broker();
    let url = format!("nats://127.0.0.1:{}", broker.port);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut data = vec![0u8; chunk];
    getrandom::getrandom(&mut data).expect("random bytes");
    let body = bytes::Bytes::from(data);
    let count = size.div_ceil(chunk) as u64;
    rt.block_on(async {
        let client = async_nats::connect(&url).await.expect("owner connects");
        let js = jetstream::new(client.clone());
        ensure_streams(&js, &Layout::default()).await.expect("streams");
        for i in 0..nodes {
            tokio::spawn(null_node(url.clone(), i, 8));
        }
        let (nats0, self0, t0) = (cpu_secs(broker.child.id()), cpu_secs(std::process::id()), Instant::now());
        let all = futures::stream::iter(0..count)
            .map(|id| store_one(client.clone(), js.clone(), body.clone(), id, nodes))
            .buffer_unordered(inflight)
            .collect::<Vec<()>>();
        tokio::time::timeout(Duration::from_secs(300), all).await.expect("1 GiB not stored within 300 s");
        let wall = t0.elapsed().as_secs_f64();
        let nats = cpu_secs(broker.child.id()) - nats0;
        let this = cpu_secs(std::process::id()) - self0;
        println!(
            "broker floor: {count} chunks of {} KiB ({} MiB) to {nodes} nodes in {wall:.2} s; \
             CPU-s nats-server {nats:.2}, owner+nodes (this process) {this:.2}",
            chunk >> 10,
            (count as usize * chunk) >> 20
        );
    });
}

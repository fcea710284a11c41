//! Shared helpers for integration tests: a real `nats-server` with JetStream on a free port and
//! real `quloud node` processes, in temp dirs. Tests poll conditions with deadlines; they never
//! sleep to wait.

#![allow(dead_code)]

use quloud::adapters::nats::fabric::{FabricOptions, NatsFabric};
use quloud::domain::ids::NodeId;
use quloud::domain::keys::{MasterKey, VaultKeys};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test with install instructions when a required tool is missing.
pub fn require_tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("`{name}` is required for this test but not on PATH: install it with `{install}`")
    })
}

/// Polls `cond` until it holds or `within` passes; panics with `what` on timeout.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn log(path: &Path) -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap())
}

/// A real nats-server with JetStream.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nats {
    pub fn start(dir: &Path) -> Nats {
        let bin = require_tool("nats-server", "apt-get install -y nats-server");
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n}}\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let mut n = Nats { child: None, port, dir: dir.to_path_buf() };
        n.child = Some(
            Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdout(log(&dir.join("nats.log")))
                .stderr(log(&dir.join("nats.log")))
                .spawn()
                .unwrap(),
        );
        n.wait_ready();
        n
    }

    fn wait_ready(&self) {
        let port = self.port;
        wait_until(Duration::from_secs(10), "nats-server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        let bin = require_tool("nats-server", "apt-get install -y nats-server");
        let conf = self.dir.join("nats.conf");
        self.child = Some(
            Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdout(log(&self.dir.join("nats.log")))
                .stderr(log(&self.dir.join("nats.log")))
                .spawn()
                .unwrap(),
        );
        self.wait_ready();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A real `quloud node` process.
pub struct Node {
    child: Option<Child>,
    pub id: NodeId,
    pub data: PathBuf,
    url: String,
    capacity: String,
}

impl Node {
    pub fn start(url: &str, data: &Path, capacity: &str) -> Node {
        let mut n = Node {
            child: None,
            id: NodeId::ANY,
            data: data.to_path_buf(),
            url: url.into(),
            capacity: capacity.into(),
        };
        n.spawn();
        n
    }

    fn log_path(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.log_path());
        let child = Command::new(env!("CARGO_BIN_EXE_quloud"))
            .args(["node", "--nats", &self.url, "--capacity", &self.capacity, "--data"])
            .arg(&self.data)
            .env("QULOUD_LOG", "info")
            .stdout(log(&self.log_path()))
            .stderr(log(&self.log_path()))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let log_path = self.log_path();
        let mut id = None;
        wait_until(Duration::from_secs(20), "the node to serve", || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            id = text
                .lines()
                .find_map(|l| l.strip_prefix("node id: "))
                .and_then(|h| NodeId::from_hex(h.trim()));
            id.is_some() && text.contains("storage node serving")
        });
        self.id = id.unwrap();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Every chunk body file in the node's data dir.
    pub fn bodies(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(self.data.join("chunks")).unwrap() {
            for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
        out
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A broker plus `k` nodes in a temp dir.
pub struct Fabric {
    pub nats: Nats,
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

impl Fabric {
    pub fn start(k: usize, capacity: &str) -> Fabric {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start(&dir.path().join("nats"));
        let nodes = (0..k)
            .map(|i| Node::start(&nats.url(), &dir.path().join(format!("node-{i}")), capacity))
            .collect();
        Fabric { nats, nodes, dir }
    }

    pub fn add_node(&mut self, capacity: &str) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node::start(&self.nats.url(), &self.dir.path().join(format!("node-{i}")), capacity));
        i
    }

    pub fn url(&self) -> String {
        self.nats.url()
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }
}

/// Owner options with short timeouts for tests.
pub fn test_options(url: &str) -> FabricOptions {
    let mut o = FabricOptions::new(url);
    o.retry_after = Duration::from_secs(2);
    o.store_deadline = Duration::from_secs(30);
    o.reply_timeout = Duration::from_secs(2);
    o
}

pub fn vault(seed: u8) -> VaultKeys {
    MasterKey::from_bytes([seed; 32]).derive()
}

pub async fn owner(keys: &VaultKeys, opts: FabricOptions) -> NatsFabric {
    NatsFabric::connect(keys.ack_token(), opts, None).await.expect("owner connects")
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(&[seed as u8; 32]).update(&seed.to_le_bytes()).finalize_xof().fill(&mut out);
    out
}

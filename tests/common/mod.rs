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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` distinct free ports (all held open at once while picking, so none is handed out twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
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
        let port = free_port();
        let conf = format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n}}\n",
            dir.join("js").display()
        );
        Nats::with_config(dir, port, &conf)
    }

    /// A nats-server on `port` with the config text `conf` (written to DIR/nats.conf).
    pub fn with_config(dir: &Path, port: u16, conf: &str) -> Nats {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("nats.conf"), conf).unwrap();
        let mut n = Nats { child: None, port, dir: dir.to_path_buf() };
        n.spawn();
        n
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
    }

    /// Starts nats-server on this instance's config and waits until it listens.
    fn spawn(&mut self) {
        let bin = require_tool("nats-server", "apt-get install -y nats-server");
        let log_path = self.dir.join("nats.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(log(&log_path))
            .stderr(log(&log_path))
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {port} within 10 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        self.spawn();
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
    extra: Vec<String>,
}

impl Node {
    pub fn start(url: &str, data: &Path, capacity: &str) -> Node {
        Node::start_with(url, data, capacity, &[])
    }

    /// A node with extra `quloud node` flags.
    pub fn start_with(url: &str, data: &Path, capacity: &str, extra: &[&str]) -> Node {
        let mut n = Node {
            child: None,
            id: NodeId::ANY,
            data: data.to_path_buf(),
            url: url.into(),
            capacity: capacity.into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
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
            .args(&self.extra)
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

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Every chunk body file in the node's data dir.
    pub fn bodies(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(shards) = std::fs::read_dir(self.data.join("chunks")) else { return out };
        for shard in shards.flatten() {
            for f in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                out.push(f.path());
            }
        }
        out
    }

    /// Bytes of chunk bodies on the node's disk.
    pub fn body_bytes(&self) -> u64 {
        self.bodies().iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
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
        Fabric::start_with(k, capacity, &[])
    }

    /// `k` nodes started with extra `quloud node` flags.
    pub fn start_with(k: usize, capacity: &str, node_flags: &[&str]) -> Fabric {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start(&dir.path().join("nats"));
        let nodes = (0..k)
            .map(|i| {
                Node::start_with(&nats.url(), &dir.path().join(format!("node-{i}")), capacity, node_flags)
            })
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

// ---------------------------------------------------------------------------------------------
// Mounts: real `quloud mount` processes on real FUSE mount points.
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every `every` until it holds or `within` passes; panics with `what` on timeout.
/// For conditions that are expensive to check (spawning a process, walking a FUSE tree).
pub fn poll_until(within: Duration, every: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(every);
    }
}

/// Runs `f` on its own thread and fails the test if it has not returned within `within` (for
/// calls into a FUSE mount that might hang). A hung thread is left behind; the mount's `Drop`
/// kills the daemon, which makes the kernel fail the blocked call.
pub fn within<T: Send + 'static>(within: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(within) {
        Ok(v) => v,
        Err(_) => {
            panic!("{what} did not return within {within:?} (still blocked after {:?})", start.elapsed())
        }
    }
}

/// The `quloud` binary under test.
/// A command's stdout then stderr, as text.
pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `cmd`, fails the test with its output unless it succeeds, and returns that output.
#[track_caller]
pub fn ok(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{what} failed ({}): {}", o.status, text(&o));
    text(&o)
}

pub fn quloud(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quloud"));
    c.arg("--home").arg(home);
    c
}

/// `quloud --home HOME init`: a new vault key.
pub fn init_home(home: &Path) {
    let out = quloud(home).arg("init").output().unwrap();
    assert!(
        out.status.success(),
        "quloud init failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `path` (canonical) is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.split(' ').nth(4) == Some(target.as_str())))
        .unwrap_or(false)
}

/// `fusermount3 -u -z PATH` if PATH is (still) mounted: never leave a stale mount behind.
pub fn lazy_unmount(path: &Path) {
    if is_mounted(path) {
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(path).status();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Mount flags for tests: the disk cache is off unless a test asks for it, so a read after a
/// remount really comes from the fabric (the default keeps uploaded chunks on local disk).
fn with_disk_cache_off(extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if !extra.contains(&"--disk-cache-size") {
        flags.extend(["--disk-cache-size".to_string(), "0".to_string()]);
    }
    flags
}

/// A running `quloud mount` process.
pub struct Mount {
    child: Option<Child>,
    /// The vault's home (key, manifest, staging, outbox, control socket).
    pub home: PathBuf,
    /// The mount point (canonical).
    pub mp: PathBuf,
    /// Log (stdout + stderr) of the current mount process.
    pub log: PathBuf,
    url: String,
    extra: Vec<String>,
    spawns: usize,
    /// The subcommand and its leading arguments (`mount` unless started otherwise).
    verb: Vec<String>,
    /// Environment variables set for the mount process.
    env: Vec<(String, String)>,
}

impl Mount {
    /// Mounts the (initialized) vault of `home` at `mp` (created if missing) against `url`, with
    /// `extra` mount flags; returns once the mount point is in the mount table.
    pub fn start(home: &Path, mp: &Path, url: &str, extra: &[&str]) -> Mount {
        Mount::start_verb(home, mp, url, &["mount"], extra)
    }

    /// Runs `quloud VERB… MOUNTPOINT --nats URL EXTRA…` (e.g. `restore`) as the mount process;
    /// returns once it has mounted.
    pub fn start_verb(home: &Path, mp: &Path, url: &str, verb: &[&str], extra: &[&str]) -> Mount {
        Mount::start_verb_env(home, mp, url, verb, extra, &[])
    }

    /// [`Mount::start_verb`] with environment variables `env` set for the mount process.
    pub fn start_verb_env(
        home: &Path,
        mp: &Path,
        url: &str,
        verb: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Mount {
        require_tool("fusermount3", "apt-get install -y fuse3");
        std::fs::create_dir_all(mp).unwrap();
        let mut m = Mount {
            child: None,
            home: home.to_path_buf(),
            mp: mp.canonicalize().unwrap(),
            log: PathBuf::new(),
            url: url.into(),
            extra: with_disk_cache_off(extra),
            spawns: 0,
            verb: verb.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        m.spawn();
        m
    }

    /// A new vault (`DIR/NAME-home`, initialized) mounted at `DIR/NAME-mp`.
    pub fn new_vault(dir: &Path, name: &str, url: &str, extra: &[&str]) -> Mount {
        let home = dir.join(format!("{name}-home"));
        init_home(&home);
        Mount::start(&home, &dir.join(format!("{name}-mp")), url, extra)
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the mount process again (after `unmount`, or after `kill9` + `clear_stale`).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the mount process is still running");
        assert!(!is_mounted(&self.mp), "{} is still mounted", self.mp.display());
        self.spawns += 1;
        self.log = PathBuf::from(format!("{}.mount-{}.log", self.mp.display(), self.spawns));
        let child = quloud(&self.home)
            .args(&self.verb)
            .arg(&self.mp)
            .args(["--nats", &self.url])
            .args(&self.extra)
            .env("QULOUD_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log(&self.log))
            .stderr(log(&self.log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("quloud mount exited with {status} before mounting; log:\n{}", self.log_text());
            }
            if self.log_text().contains(" mounted at ") && is_mounted(&self.mp) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "quloud mount did not mount {} within 30 s; log:\n{}",
                self.mp.display(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit (status 0, "vault unmounted", mount point gone).
    /// Falls back to `fusermount3 -u` if the process does not exit, and fails the test then.
    /// The wait is 60 s: the last snapshot takes up to 15 s, and with four tests at a time the
    /// kernel has twice taken 31–35 s to release an idle mount (the mount logs where it waits).
    pub fn unmount(&mut self) {
        let pid = self.pid().expect("the mount is not running") as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let sent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let status = match self.wait_exit(Duration::from_secs(60)) {
            Some(s) => s,
            None => {
                let _ = Command::new("fusermount3").arg("-u").arg(&self.mp).status();
                let late = self.wait_exit(Duration::from_secs(10));
                panic!(
                    "quloud mount did not exit within 60 s of SIGTERM (sent at Unix time {}.{:03}; after \
                     `fusermount3 -u`: {late:?}); log:\n{}",
                    sent.as_secs(),
                    sent.subsec_millis(),
                    tail(&self.log_text(), 40)
                );
            }
        };
        let text = self.log_text();
        assert!(status.success(), "quloud mount exited with {status} at unmount; log:\n{}", tail(&text, 40));
        assert!(text.contains(" unmounted\n"), "no \"… unmounted\" in the log:\n{}", tail(&text, 40));
        assert!(
            !is_mounted(&self.mp),
            "{} is still mounted after the mount process exited",
            self.mp.display()
        );
    }

    /// Unmounts and mounts again: the page cache and the chunk cache start empty.
    pub fn remount(&mut self) {
        self.unmount();
        self.spawn();
    }

    /// SIGKILL: a crash. The mount stays behind, stale (ENOTCONN), until `clear_stale`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Clears the stale mount a crash left behind (`fusermount3 -u -z`).
    pub fn clear_stale(&mut self) {
        assert!(self.child.is_none(), "the mount process is still running");
        let status = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.mp).status().unwrap();
        assert!(status.success(), "fusermount3 -u -z {} failed: {status}", self.mp.display());
        assert!(!is_mounted(&self.mp));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- last lines of {} ---\n{}", self.log.display(), tail(&self.log_text(), 40));
        }
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                self.kill9();
            }
        }
        lazy_unmount(&self.mp);
    }
}

/// The figures of `quloud status --json` the tests look at.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub inodes: u64,
    pub chunks: u64,
    pub pending: u64,
    pub durable: u64,
    pub degraded: u64,
    pub staged_files: u64,
    pub unreferenced: u64,
    pub queued: u64,
    pub json: String,
}

fn json_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// `quloud --home HOME status --json` (asks the running mount, if any).
pub fn status(home: &Path) -> Status {
    let out = quloud(home).args(["status", "--json"]).output().unwrap();
    let json = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "quloud status failed: {json}{}", String::from_utf8_lossy(&out.stderr));
    let get = |k: &str| json_u64(&json, k).unwrap_or_else(|| panic!("no \"{k}\" in status: {json}"));
    Status {
        inodes: get("inodes"),
        chunks: get("chunks"),
        pending: get("pending"),
        durable: get("durable"),
        degraded: get("degraded"),
        staged_files: get("staged_files"),
        unreferenced: get("unreferenced"),
        queued: get("queued"),
        json,
    }
}

/// Polls `status --json` until everything is uploaded (pending == 0 and staged_files == 0);
/// returns that status.
pub fn wait_durable_within(home: &Path, within: Duration) -> Status {
    let deadline = Instant::now() + within;
    loop {
        let s = status(home);
        if s.pending == 0 && s.staged_files == 0 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not everything uploaded within {within:?}; last status: {}",
            s.json
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`wait_durable_within`] with a default of 90 s.
pub fn wait_durable(home: &Path) -> Status {
    wait_durable_within(home, Duration::from_secs(90))
}

/// A small deterministic PRNG (splitmix64) for sizes and offsets.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A mount's metrics samples at `addr` (its `--metrics` endpoint), by sample name.
pub fn scrape_metrics(addr: impl std::net::ToSocketAddrs) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the mount's metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// `quloud_vault_chunks_collected_total` from a mount's metrics endpoint at `addr`.
pub fn chunks_collected(addr: &str) -> u64 {
    let m = scrape_metrics(addr);
    *m.get("quloud_vault_chunks_collected_total").unwrap_or_else(|| panic!("no GC counter in: {m:?}")) as u64
}

pub mod cluster;
pub mod friends;
pub mod jwt;
pub mod netns;
pub mod tools;
pub mod tree;
pub mod up;

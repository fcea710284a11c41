//! Friends' houses in network namespaces of their own, end to end: a hub (`quloud up --hub`)
//! in namespace 0 and houses in namespaces 1…, each joined with `quloud join` and run with
//! `quloud up --house` (a leaf nats-server and a storage node; the owner's house also mounts
//! its vault). Processes run under `nsenter --net`, so the owner's FUSE mount is seen by the
//! test. One bed at a time per test process (the namespaces are named after the pid).

use super::netns::{Proc, TestBed};
use super::{init_home, is_mounted, lazy_unmount, poll_until, require_tool};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub const WITHIN: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_millis(250);

/// Beds of one test process are made one after the other.
static ONE_BED: Mutex<()> = Mutex::new(());

/// One house: its home, its `up --house` process and, for the owner, its mount point.
pub struct House {
    pub name: String,
    pub home: PathBuf,
    /// Its namespace's index in the bed.
    pub machine: usize,
    pub up: Option<Proc>,
    pub mp: Option<PathBuf>,
}

impl House {
    /// Files in the house node's `chunks/` (one per replica it stores).
    pub fn bodies(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(shards) = std::fs::read_dir(self.home.join("house/node/chunks")) else { return out };
        for shard in shards.flatten() {
            out.extend(std::fs::read_dir(shard.path()).into_iter().flatten().flatten().map(|f| f.path()));
        }
        out
    }

    /// Bytes of those files.
    pub fn body_bytes(&self) -> u64 {
        self.bodies().iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// The house node's id (hex), from `house.json`.
    pub fn node(&self) -> String {
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.home.join("house/house.json")).unwrap()).unwrap();
        cfg["cert"]["node"].as_str().unwrap().to_string()
    }

    /// Its leaf nats-server's log.
    pub fn nats_log(&self) -> String {
        std::fs::read_to_string(self.home.join("house/nats.log")).unwrap_or_default()
    }

    /// A path in the owner's mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mp.as_ref().expect("this house mounts no vault").join(rel)
    }
}

impl Drop for House {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(up) = &self.up {
                let out = up.out();
                let tail: Vec<&str> = out.lines().rev().take(30).collect();
                eprintln!("--- last lines of {} ---", up.log.display());
                tail.iter().rev().for_each(|l| eprintln!("{l}"));
            }
        }
        drop(self.up.take());
        if let Some(mp) = &self.mp {
            lazy_unmount(mp);
        }
    }
}

/// A hub and its houses in a bed of namespaces. Dropped: houses, then the hub, then the
/// namespaces.
pub struct Friends {
    pub houses: Vec<House>,
    hub: Option<Proc>,
    pub hub_home: PathBuf,
    pub bed: TestBed,
    pub tmp: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
}

/// Stdout and stderr of a command, for messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Friends {
    /// A bed for a hub and `houses` houses, and the hub running in machine 0.
    pub fn start(houses: usize) -> Friends {
        require_tool("nats-server", "apt-get install -y nats-server");
        require_tool("openssl", "apt-get install -y openssl");
        require_tool("nsenter", "apt-get install -y util-linux");
        require_tool("tc", "apt-get install -y iproute2");
        let one = ONE_BED.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let bed = TestBed::new(houses + 1);
        let hub_home = tmp.path().join("hub");
        let mut f = Friends { houses: Vec::new(), hub: None, hub_home, bed, tmp, _one: one };
        let public = f.bed.addr(0);
        let cmd = f.quloud(0, &f.hub_home, &["up", "--hub", "--public", &public]);
        let mut hub = Proc::spawn(cmd, f.tmp.path().join("hub.log"));
        hub.wait_for("invite a friend's box", WITHIN);
        f.hub = Some(hub);
        f
    }

    /// `quloud --home HOME ARGS` in machine `i`'s network namespace.
    pub fn quloud(&self, i: usize, home: &Path, args: &[&str]) -> Command {
        let mut c = self.bed.nsenter(i, Path::new(env!("CARGO_BIN_EXE_quloud")));
        c.arg("--home").arg(home).args(args).env("QULOUD_LOG", "info");
        c
    }

    /// `quloud ARGS` on the hub, which must succeed.
    pub fn on_hub(&self, args: &[&str]) -> Output {
        let out = self.quloud(0, &self.hub_home, args).output().unwrap();
        assert!(out.status.success(), "quloud {}: {}", args.join(" "), text(&out));
        out
    }

    /// `quloud invite NAME EXTRA` on the hub → the invite line.
    pub fn invite(&self, name: &str, extra: &[&str]) -> String {
        let out = self.on_hub(&[&["invite", name], extra].concat());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout.lines().find(|l| l.starts_with("QI1-")).expect("an invite line").to_string()
    }

    /// `quloud members --json` on the hub.
    pub fn members(&self) -> serde_json::Value {
        serde_json::from_slice(&self.on_hub(&["members", "--json"]).stdout).unwrap()
    }

    /// The machine the next house goes to, and its home.
    pub fn next_home(&self, name: &str) -> (usize, PathBuf) {
        (self.houses.len() + 1, self.tmp.path().join(name))
    }

    /// Invites `name`, joins it from its own namespace and starts `up --house`; an owner
    /// (`mount` holds the mount flags) gets a vault key first and mounts it at `DIR/NAME-mp`.
    pub fn join(&mut self, name: &str, mount: Option<&[&str]>) -> &mut House {
        let (machine, home) = self.next_home(name);
        if mount.is_some() {
            init_home(&home);
        }
        let invite = self.invite(name, &[]);
        let out = self.quloud(machine, &home, &["join", &invite, "--capacity", "4GiB"]).output().unwrap();
        assert!(out.status.success(), "join {name}: {}", text(&out));
        let mut house = House { name: name.into(), home, machine, up: None, mp: None };
        let mut args = vec!["up".to_string(), "--house".to_string()];
        if let Some(flags) = mount {
            let mp = self.tmp.path().join(format!("{name}-mp"));
            std::fs::create_dir_all(&mp).unwrap();
            args.push(mp.display().to_string());
            args.extend(["--disk-cache-size", "0"].iter().chain(flags).map(|s| s.to_string()));
            house.mp = Some(mp.canonicalize().unwrap());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.quloud(machine, &house.home, &args);
        let mut up = Proc::spawn(cmd, self.tmp.path().join(format!("{name}.log")));
        up.wait_for("is up: nats-server at", WITHIN);
        if let Some(mp) = &house.mp {
            up.wait_for(" mounted at ", WITHIN);
            assert!(is_mounted(mp), "{} is not mounted", mp.display());
        }
        house.up = Some(up);
        self.houses.push(house);
        self.houses.last_mut().unwrap()
    }

    /// Waits until the hub has seen the node of every house.
    pub fn wait_all_seen(&self) {
        let n = self.houses.len();
        poll_until(WITHIN, EVERY, "the hub to see every house", || {
            let m = self.members();
            m["houses"].as_array().unwrap().iter().filter(|h| h["last_seen"].as_u64() > Some(0)).count() == n
        });
    }

    /// Caps house `h`'s uplink (egress of its eth0) at `rate` (tc syntax, e.g. `200mbit`).
    pub fn cap_uplink(&self, h: usize, rate: &str) {
        let mut tc = self.bed.nsenter(self.houses[h].machine, Path::new("tc"));
        tc.args([
            "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms",
        ]);
        let out = tc.output().unwrap();
        assert!(out.status.success(), "tc: {}", text(&out));
    }

    /// Bytes house `h` has sent on its uplink (`ip -s link show eth0` in its namespace).
    pub fn tx_bytes(&self, h: usize) -> u64 {
        let mut ip = self.bed.nsenter(self.houses[h].machine, Path::new("ip"));
        let out = ip.args(["-s", "link", "show", "eth0"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let at = lines.iter().position(|l| l.starts_with("TX:")).expect("a TX line");
        lines[at + 1].split_whitespace().next().and_then(|b| b.parse().ok()).expect("TX bytes")
    }

    /// Takes house `h`'s link down or up.
    pub fn link(&self, h: usize, up: bool) {
        self.bed.link(self.houses[h].machine, up);
    }

    /// `quloud ARGS` of house `h`, in its namespace.
    pub fn run(&self, h: usize, args: &[&str]) -> Output {
        self.quloud(self.houses[h].machine, &self.houses[h].home, args).output().unwrap()
    }

    /// `quloud status --json` of the vault of house `h`.
    pub fn status(&self, h: usize) -> serde_json::Value {
        let out = self.run(h, &["status", "--json"]);
        assert!(out.status.success(), "status: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status JSON ({e}): {}", text(&out)))
    }

    /// `quloud nodes --json` of the vault of house `h`.
    pub fn nodes(&self, h: usize) -> Vec<serde_json::Value> {
        let out = self.run(h, &["nodes", "--json"]);
        assert!(out.status.success(), "nodes: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits until every chunk of house `h`'s vault is durable; returns the chunk count.
    pub fn wait_durable(&self, h: usize, within: Duration) -> u64 {
        let mut s = self.status(h);
        poll_until(within, EVERY, "every chunk durable", || {
            s = self.status(h);
            s["chunks"].as_u64() > Some(0)
                && s["pending"] == 0
                && s["staged_files"] == 0
                && s["durable"] == s["chunks"]
        });
        s["chunks"].as_u64().unwrap()
    }

    /// Replicas per node in house `h`'s status, by node id (hex).
    pub fn per_node(&self, h: usize) -> std::collections::BTreeMap<String, u64> {
        serde_json::from_value(self.status(h)["per_node"].clone()).unwrap()
    }
}

impl Drop for Friends {
    fn drop(&mut self) {
        self.houses.clear();
        drop(self.hub.take());
    }
}

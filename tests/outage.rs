//! Friends' houses when links and machines fail, end to end: a real hub (`quloud up --hub`) in
//! one network namespace, houses in others (a leaf nats-server and a storage node each, from
//! `quloud join` + `quloud up --house`), joined by veth pairs and a bridge; the owner's vault
//! really mounted in its house. The owner's uplink goes down, the hub restarts mid-upload, the
//! owner's house is destroyed and rebuilt from the paper key.

mod common;

use common::netns::{Proc, TestBed};
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;
/// The other houses of every scenario; the owner's house is `alice`.
const OTHERS: [&str; 3] = ["bob", "carol", "dave"];
/// Scenarios share nothing but the machine: one at a time keeps them within their deadlines.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// One house: its home and its `quloud up --house` process.
struct House {
    home: PathBuf,
    up: Option<Proc>,
}

/// The hub and the houses of one scenario. Machine 0 is the hub, 1 the owner's house, 2..=4 the
/// other houses, 5 a spare box.
struct World {
    bed: TestBed,
    tmp: tempfile::TempDir,
    hub_home: PathBuf,
    hub: Option<Proc>,
    houses: BTreeMap<&'static str, House>,
    /// The owner's mount point (the mount runs in `up --house` of machine 1).
    mp: PathBuf,
}

impl World {
    /// `quloud ARGS` with `home`, in machine `i`'s network namespace but this test's mount
    /// namespace (`nsenter --net`), so a FUSE mount made there is visible to the test.
    fn q(&self, i: usize, home: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.bed.netns(i)))
            .arg(env!("CARGO_BIN_EXE_quloud"))
            .arg("--home")
            .arg(home)
            .args(args)
            .env("QULOUD_LOG", "info");
        c
    }

    fn ok(&self, i: usize, home: &Path, args: &[&str]) -> String {
        let out = self.q(i, home, args).output().unwrap();
        assert!(out.status.success(), "quloud {}: {}", args.join(" "), text(&out));
        text(&out)
    }

    /// A hub and four houses; alice's vault (made before she joins, so her house's NATS user
    /// gets its owner subjects) mounted by her `up --house` with `mount_flags`, once she sees
    /// the three other houses.
    fn start(mount_flags: &[&str]) -> World {
        require_tool("nats-server", "apt-get install -y nats-server");
        require_tool("openssl", "apt-get install -y openssl");
        require_tool("nsenter", "apt-get install -y util-linux");
        require_tool("fusermount3", "apt-get install -y fuse3");
        let tmp = tempfile::tempdir().unwrap();
        let bed = TestBed::new(6);
        let hub_home = tmp.path().join("hub");
        let mp = tmp.path().join("alice-vault");
        std::fs::create_dir_all(&mp).unwrap();
        let mp = mp.canonicalize().unwrap();
        let mut w = World { bed, tmp, hub_home, hub: None, houses: BTreeMap::new(), mp };
        w.start_hub();
        init_home(&w.home("alice"));
        for (i, name) in ["alice"].iter().chain(OTHERS.iter()).enumerate() {
            w.join(i + 1, name);
        }
        for (i, name) in OTHERS.iter().enumerate() {
            w.up_house(i + 2, name, &[]);
        }
        let mut args = vec![w.mp.to_str().unwrap().to_string()];
        args.extend(mount_flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        w.up_house(1, "alice", &args);
        w.wait_mounted();
        poll_until(WITHIN, Duration::from_millis(500), "alice to see the three other houses", || {
            w.status()["placement"]["houses_reachable"].as_u64() == Some(3)
        });
        w
    }

    fn home(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn start_hub(&mut self) {
        let public = self.bed.addr(0);
        let log = unique_log(self.tmp.path(), "hub");
        let mut hub = Proc::spawn(self.q(0, &self.hub_home, &["up", "--hub", "--public", &public]), log);
        hub.wait_for("invite a friend's box", WITHIN);
        self.hub = Some(hub);
    }

    /// SIGKILL to the hub's `up` and its nats-server: the hub machine loses power.
    fn kill_hub(&mut self) {
        let hub = self.hub.take().expect("the hub runs");
        // SAFETY: kill(2) on the process group of a child this test started.
        unsafe { libc::kill(-(hub.child.id() as i32), libc::SIGKILL) };
        drop(hub);
    }

    /// `quloud invite NAME` on the hub, then `quloud join` on machine `i`.
    fn join(&mut self, i: usize, name: &'static str) {
        let out = self.ok(0, &self.hub_home, &["invite", name]);
        let invite = out.lines().find(|l| l.starts_with("QI1-")).expect("an invite line").to_string();
        let home = self.home(name);
        self.ok(i, &home, &["join", &invite, "--capacity", "1GiB"]);
        self.houses.insert(name, House { home, up: None });
    }

    /// `quloud up --house EXTRA…` on machine `i`.
    fn up_house(&mut self, i: usize, name: &'static str, extra: &[&str]) {
        let home = self.houses[name].home.clone();
        let log = unique_log(self.tmp.path(), name);
        let mut up = Proc::spawn(self.q(i, &home, &[&["up", "--house"], extra].concat()), log);
        up.wait_for("is up: nats-server at", WITHIN);
        self.houses.get_mut(name).unwrap().up = Some(up);
    }

    fn alice(&self) -> &Path {
        &self.houses["alice"].home
    }

    fn wait_mounted(&mut self) {
        let up = self.houses.get_mut("alice").unwrap().up.as_mut().unwrap();
        up.wait_for(" mounted at ", WITHIN);
        let mp = self.mp.clone();
        wait_until(WITHIN, "the vault in the mount table", || is_mounted(&mp));
    }

    /// Stops alice's `up --house` (SIGTERM: the mount unmounts cleanly) and waits for it.
    fn stop_alice(&mut self) {
        let mut up = self.houses.get_mut("alice").unwrap().up.take().expect("alice's house runs");
        // SAFETY: kill(2) on the process group of a child this test started.
        unsafe { libc::kill(-(up.child.id() as i32), libc::SIGTERM) };
        let deadline = Instant::now() + WITHIN;
        while up.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "alice's house did not stop:\n{}", up.out());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!is_mounted(&self.mp), "the vault is still mounted after its house stopped");
    }

    /// `quloud status --json` of alice's vault.
    fn status(&self) -> serde_json::Value {
        let out = quloud(self.alice()).args(["status", "--json"]).output().unwrap();
        assert!(out.status.success(), "status: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The node of each other house.
    fn other_nodes(&self) -> Vec<String> {
        OTHERS.iter().map(|n| node_of(&self.houses[n].home)).collect()
    }

    /// Polls until nothing is pending and every chunk has one replica in each other house.
    fn wait_in_three_houses(&self, within: Duration) -> serde_json::Value {
        let mut s = self.status();
        poll_until(
            within,
            Duration::from_millis(500),
            "every chunk durable in the three other houses",
            || {
                s = self.status();
                let chunks = s["chunks"].as_u64().unwrap_or(0);
                chunks > 0
                    && s["pending"] == 0
                    && s["staged_files"] == 0
                    && s["durable"] == s["chunks"]
                    && self.other_nodes().iter().all(|n| s["per_node"][n].as_u64() == Some(chunks))
            },
        );
        assert!(!s["per_node"].as_object().unwrap().contains_key(&node_of(self.alice())), "{s}");
        s
    }

    /// The log of alice's current `up --house` (the mount's log lines are in it).
    fn alice_log(&self) -> String {
        self.houses["alice"].up.as_ref().map(|u| u.out()).unwrap_or_default()
    }
}

/// Every nats-server log under `dir` (the hub's and each house's leaf server's).
fn nats_logs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == "nats.log") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- alice's house ---\n{}", tail(&self.alice_log(), 60));
            if let Some(hub) = &self.hub {
                eprintln!("--- the hub ---\n{}", tail(&hub.out(), 30));
            }
            for log in nats_logs(self.tmp.path()) {
                // The server's own events, without the per-connection lines.
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let events: Vec<&str> =
                    text.lines().filter(|l| !l.contains(" - lid:") && !l.contains(" - rid:")).collect();
                eprintln!("--- {} ---\n{}", log.display(), tail(&events.join("\n"), 25));
            }
        }
        // Houses first (the mount unmounts), then the hub; the namespaces go with the bed.
        for house in self.houses.values_mut() {
            drop(house.up.take());
        }
        lazy_unmount(&self.mp);
        drop(self.hub.take());
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn unique_log(dir: &Path, name: &str) -> PathBuf {
    (0..).map(|i| dir.join(format!("{name}.{i}.log"))).find(|p| !p.exists()).unwrap()
}

fn node_of(home: &Path) -> String {
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("house/house.json")).unwrap()).unwrap();
    cfg["cert"]["node"].as_str().unwrap().to_string()
}

/// Writes `data` to `path` and fsyncs it, failing the test if that takes longer than 30 s.
fn write_synced(path: PathBuf, data: Vec<u8>) {
    within(Duration::from_secs(30), "a write and fsync in the mount", move || {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    });
}

/// BLAKE3 of every file under `dir`, by path relative to it.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string());
            }
        }
    }
    out
}

fn expected(files: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    files.iter().map(|(n, d)| (n.clone(), blake3::hash(d).to_hex().to_string())).collect()
}

/// The owner's own uplink goes down for longer than --dead-after: the mount goes on taking
/// writes (fsync returns), repair pauses and says why, no node is written off and nothing is
/// healed; when the link returns the queue drains and every chunk is in the three other houses.
#[test]
fn the_owners_uplink_down_pauses_repair_writes_go_on_and_the_queue_drains_after() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dead_after = Duration::from_secs(12);
    let w = World::start(&[
        "--disk-cache-size",
        "0",
        "--audit-interval",
        "2s",
        "--offline-after",
        "2s",
        "--offline-grace",
        "4s",
        "--dead-after",
        "12s",
    ]);
    let mut files = vec![("before.bin".to_string(), bytes(3 * MIB, 1))];
    write_synced(w.mp.join("before.bin"), files[0].1.clone());
    let before = w.wait_in_three_houses(WITHIN);

    // The uplink down: the mount still answers and takes writes; fsync returns.
    w.bed.link(1, false);
    let down_at = Instant::now();
    for i in 0..3 {
        let name = format!("during-{i}.bin");
        let data = bytes(MIB + 4321 * i, 10 + i as u64);
        write_synced(w.mp.join(&name), data.clone());
        files.push((name, data));
    }
    assert_eq!(hashes(&w.mp), expected(&files), "the mount reads back what it took while cut off");

    // Past --dead-after with every other house unreachable: repair is paused, and says why;
    // nothing is written off, no replica forgotten, nothing healed.
    let mut s = w.status();
    poll_until(WITHIN, Duration::from_millis(500), "repair paused past --dead-after", || {
        s = w.status();
        s["repair"]["paused"] == true && down_at.elapsed() > dead_after + Duration::from_secs(4)
    });
    let reason = s["repair"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("own link"), "{s}");
    assert_eq!(s["nodes"]["written_off"], 0, "{s}");
    assert!(s["pending"].as_u64() > Some(0), "the writes made while cut off are queued: {s}");
    let chunks = before["chunks"].as_u64().unwrap();
    for n in w.other_nodes() {
        assert!(s["per_node"][&n].as_u64() >= Some(chunks), "a replica on {n} forgotten: {s}");
    }
    let out = quloud(w.alice()).arg("status").output().unwrap();
    assert!(text(&out).contains("repair paused"), "status says repair is paused: {}", text(&out));
    assert!(w.alice_log().contains("repair paused"), "the log says repair is paused");

    // The link back: the queue drains, every chunk in the three other houses; nothing was
    // written off or healed meanwhile.
    w.bed.link(1, true);
    let s = w.wait_in_three_houses(Duration::from_secs(120));
    assert_eq!(s["nodes"]["written_off"], 0, "{s}");
    assert_eq!(s["repair"]["paused"], false, "{s}");
    let log = w.alice_log();
    assert!(!log.contains("node written off"), "a node written off:\n{}", tail(&log, 40));
    assert!(!log.contains("chunk healed"), "a chunk healed while the owner was cut off:\n{}", tail(&log, 40));
    assert_eq!(hashes(&w.mp), expected(&files));
}

/// The hub's machine loses power in the middle of an upload and comes back: nothing is lost.
/// Every chunk reaches its three houses, and every file reads back exact after a cold remount.
#[test]
fn the_hub_restarted_mid_upload_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::start(&["--disk-cache-size", "0"]);
    let mut files = Vec::new();
    for i in 0..6 {
        let name = format!("first-{i}.bin");
        let data = bytes(2 * MIB + 999 * i, 20 + i as u64);
        write_synced(w.mp.join(&name), data.clone());
        files.push((name, data));
    }
    let s = w.status();
    let waiting = s["pending"].as_u64().unwrap_or(0) + s["staged_files"].as_u64().unwrap_or(0);
    assert!(waiting > 0, "the upload is under way when the hub goes: {s}");
    w.kill_hub();
    for i in 0..3 {
        let name = format!("while-down-{i}.bin");
        let data = bytes(MIB + 17 * i, 40 + i as u64);
        write_synced(w.mp.join(&name), data.clone());
        files.push((name, data));
    }
    w.start_hub();
    w.wait_in_three_houses(Duration::from_secs(180));

    // A cold remount (no disk cache, an empty page cache): every byte from the houses.
    w.stop_alice();
    let mp = w.mp.to_str().unwrap().to_string();
    w.up_house(1, "alice", &[&mp, "--disk-cache-size", "0"]);
    w.wait_mounted();
    let got = within(Duration::from_secs(120), "reading every file back", {
        let mp = w.mp.clone();
        move || hashes(&mp)
    });
    assert_eq!(got, expected(&files), "files after the hub's restart and a cold remount");
}

/// The owner's house burns down (its namespace and home deleted, after a snapshot): a new box
/// joins with a new invite and the paper key, `quloud restore` brings back identical files.
#[test]
fn a_destroyed_owners_house_is_rebuilt_on_a_new_box_with_the_paper_key() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::start(&["--disk-cache-size", "0"]);
    let mut files = Vec::new();
    std::fs::create_dir_all(w.mp.join("photos")).unwrap();
    for i in 0..5 {
        let name = format!("photos/p{i}.jpg");
        let data = bytes(MIB / 2 + 3333 * i, 60 + i as u64);
        write_synced(w.mp.join(&name), data.clone());
        files.push((name, data));
    }
    w.wait_in_three_houses(WITHIN);
    w.ok(1, &w.houses["alice"].home.clone(), &["snapshot"]);
    let paper = std::fs::read_to_string(w.alice().join("master.key")).unwrap();
    let key_file = w.tmp.path().join("paper.txt");
    std::fs::write(&key_file, &paper).unwrap();

    // The house is gone: its processes, its network and its disk.
    let home = w.alice().to_path_buf();
    drop(w.houses.get_mut("alice").unwrap().up.take());
    lazy_unmount(&w.mp);
    w.bed.destroy(1);
    std::fs::remove_dir_all(&home).unwrap();

    // A new box (machine 5) joins with a new invite and the paper key, runs its house and
    // restores the vault.
    let out = w.ok(0, &w.hub_home, &["invite", "alice-new"]);
    let invite = out.lines().find(|l| l.starts_with("QI1-")).expect("an invite line").to_string();
    let new_home = w.home("alice-new");
    let key_arg = key_file.to_str().unwrap();
    w.ok(5, &new_home, &["join", &invite, "--capacity", "1GiB", "--key-file", key_arg]);
    w.houses.insert("alice-new", House { home: new_home.clone(), up: None });
    w.up_house(5, "alice-new", &[]);
    let port = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(new_home.join("house/house.json")).unwrap(),
    )
    .unwrap()["port"]
        .as_u64()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    // The join restarted the hub's nats-server: the restore waits until the new house's leaf
    // reaches the other houses again, as a person would wait for `quloud check` to pass.
    let check = ["check", "--nats", &url, "--js-domain", "hub", "--replicas", "3", "--size", "1MiB"];
    poll_until(WITHIN, Duration::from_millis(500), "a check from the new box", || {
        w.q(5, &new_home, &check).output().unwrap().status.success()
    });
    let mp = w.mp.to_str().unwrap().to_string();
    let restore = ["restore", &mp, "--nats", &url, "--js-domain", "hub", "--key-file", key_arg];
    let log = unique_log(w.tmp.path(), "restore");
    let mut r = Proc::spawn(w.q(5, &new_home, &[&restore[..], &["--disk-cache-size", "0"]].concat()), log);
    r.wait_for(" mounted at ", Duration::from_secs(120));
    assert!(r.out().contains("vault restored"), "{}", r.out());
    let got = within(Duration::from_secs(120), "reading the restored files", {
        let mp = w.mp.clone();
        move || hashes(&mp)
    });
    assert_eq!(got, expected(&files), "restored files");
    drop(r);
    lazy_unmount(&w.mp);
}

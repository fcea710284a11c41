//! A test bed of network namespaces made by the test: a switch namespace holding a bridge, and
//! one namespace per machine (hub, houses) joined to it by a veth pair, on 10.213.N.0/24.
//! Dropped, it deletes every namespace it made (and so their links).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip(8) runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The namespaces of one test.
pub struct TestBed {
    tag: String,
    switch: String,
    machines: Vec<String>,
    net: u8,
}

impl TestBed {
    /// `n` machines, each with its own namespace and address 10.213.NET.(i+1).
    pub fn new(n: usize) -> TestBed {
        super::require_tool("ip", "apt-get install -y iproute2");
        let pid = std::process::id();
        let tag = format!("{:x}", pid % 0xfffff);
        let net = (pid % 250) as u8;
        let switch = format!("qsw{tag}");
        ip(&["netns", "add", &switch]);
        let mut bed = TestBed { tag, switch, machines: Vec::new(), net };
        ip(&["-n", &bed.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bed.switch, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = format!("q{}m{i}", bed.tag);
            ip(&["netns", "add", &ns]);
            bed.machines.push(ns.clone());
            let (outside, inside) = (format!("p{i}"), "eth0".to_string());
            ip(&[
                "-n",
                &bed.switch,
                "link",
                "add",
                &outside,
                "type",
                "veth",
                "peer",
                "name",
                &inside,
                "netns",
                &ns,
            ]);
            ip(&["-n", &bed.switch, "link", "set", &outside, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", bed.addr(i)), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        bed
    }

    /// Machine `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.net, i + 1)
    }

    /// `program` run inside machine `i`'s namespace.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.machines[i]]).arg(program);
        c
    }

    /// `program` run in machine `i`'s network namespace only (`nsenter --net`): unlike
    /// [`TestBed::command`], it shares the caller's mount namespace, so a FUSE mount it makes is
    /// seen by the test.
    pub fn nsenter(&self, i: usize, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.machines[i])).arg(program);
        c
    }

    /// Machine `i`'s namespace name (`/run/netns/NAME`).
    pub fn netns(&self, i: usize) -> &str {
        &self.machines[i]
    }

    /// Deletes machine `i`'s namespace (and so its link): the machine is gone.
    pub fn destroy(&self, i: usize) {
        ip(&["netns", "del", &self.machines[i]]);
    }

    /// Takes machine `i`'s link to the switch down or up.
    pub fn link(&self, i: usize, up: bool) {
        ip(&["-n", &self.switch, "link", "set", &format!("p{i}"), if up { "up" } else { "down" }]);
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for ns in self.machines.iter().chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A long-running process started in a namespace, its output in `log`; killed with its
/// process group when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        use std::os::unix::process::CommandExt;
        let out = File::create(&log).unwrap();
        let child = cmd.process_group(0).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap();
        Proc { child, log }
    }

    pub fn out(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the output holds `text`, failing early if the process exits.
    pub fn wait_for(&mut self, text: &str, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self.out().contains(text) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("exited ({s}) before printing {text:?}:\n{}", self.out());
            }
            assert!(std::time::Instant::now() < deadline, "no {text:?} within {within:?}:\n{}", self.out());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child we started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

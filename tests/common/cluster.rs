//! A three-server NATS cluster with JetStream on loopback: the deployment docs/OPERATIONS.md
//! describes, for tests that stop one server while work is in flight.

use super::{free_ports, wait_until, Nats};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// `n` nats-servers routed into one cluster, each with JetStream and a monitoring port.
pub struct Cluster {
    pub servers: Vec<Nats>,
    pub http: Vec<u16>,
}

impl Cluster {
    pub fn start(dir: &Path, n: usize) -> Cluster {
        let all = free_ports(3 * n);
        let ports: Vec<(u16, u16, u16)> = all.chunks(3).map(|p| (p[0], p[1], p[2])).collect();
        let mut servers = Vec::new();
        for (i, (client, route, http)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, r, _))| format!("nats-route://127.0.0.1:{r}"))
                .collect();
            let sdir = dir.join(format!("s{i}"));
            let conf = format!(
                "server_name: s{i}\nhost: 127.0.0.1\nport: {client}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 1GB\n}}\n\
                 cluster {{\n  name: quloud-test\n  host: 127.0.0.1\n  port: {route}\n  routes: [{}]\n}}\n",
                sdir.join("js").display(),
                routes.join(", ")
            );
            servers.push(Nats::with_config(&sdir, *client, &conf));
        }
        let c = Cluster { servers, http: ports.iter().map(|p| p.2).collect() };
        for i in 0..n {
            c.wait_healthy(i, Duration::from_secs(60));
        }
        c
    }

    /// Every server's client URL, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.servers.iter().map(|s| s.url()).collect::<Vec<_>>().join(",")
    }

    /// A GET on server `i`'s monitoring port: (status code, body).
    pub fn monitor(&self, i: usize, path: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http[i])).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// Waits until server `i` reports itself healthy, JetStream included (`/healthz`).
    pub fn wait_healthy(&self, i: usize, within: Duration) {
        wait_until(within, &format!("nats-server s{i} to be healthy"), || {
            matches!(self.monitor(i, "/healthz"), Some((200, _)))
        });
    }

    /// The server a client named `name` is connected to.
    pub fn server_of(&self, name: &str) -> Option<usize> {
        let needle = format!("\"name\": \"{name}\"");
        (0..self.servers.len())
            .find(|&i| self.monitor(i, "/connz?limit=1024").is_some_and(|(_, b)| b.contains(&needle)))
    }
}

//! `quloud up`: a one-machine fabric — nats-server with JetStream on a free loopback port and K
//! local storage nodes, all under `--home`/fabric — checked with a round trip, then served until
//! Ctrl-C, and stopped in order (nodes first, then the broker).

use super::{cancel_on_signal, init, key_path, run_check};
use crate::cli::UpArgs;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Polls until something listens on `port`, or fails after `within`.
pub async fn wait_for_port(port: u16, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing is listening on 127.0.0.1:{port} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn log_file(path: &Path) -> Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    Ok(Stdio::from(f))
}

/// Go's garbage-collector target for the nats-server `up` starts, unless `GOGC` is set. At Go's
/// default (100) a 1 GiB store made nats-server spend ~1.5 CPU-s more (of ~9) collecting the
/// chunk bodies passing through; at 400 its peak RSS went from 123 to 294 MiB
/// (docs/PERFORMANCE.md §3).
pub const NATS_GOGC: &str = "400";

/// Writes a nats-server config with JetStream under `dir` and starts it.
pub fn start_nats(dir: &Path, port: u16) -> Result<Child> {
    let Some(bin) = which("nats-server") else {
        bail!("nats-server not found on PATH: install it with `sudo apt-get install -y nats-server`");
    };
    std::fs::create_dir_all(dir.join("jetstream"))?;
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n}}\n",
            dir.join("jetstream").display()
        ),
    )?;
    let mut cmd = Command::new(bin);
    if std::env::var_os("GOGC").is_none() {
        cmd.env("GOGC", NATS_GOGC);
    }
    cmd.arg("-c")
        .arg(&conf)
        .stdout(log_file(&dir.join("nats.log"))?)
        .stderr(log_file(&dir.join("nats.log"))?)
        // Its own process group: Ctrl-C in the terminal reaches `up` only, which stops the
        // mount first (its last snapshot needs the fabric) and the fabric after it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start nats-server")
}

/// Sends SIGTERM and waits up to 10 s before killing.
pub async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on a child we started; no memory is touched.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

pub(super) async fn up(home: &Path, args: UpArgs) -> Result<()> {
    if !key_path(home).exists() {
        init(home)?;
        println!();
    }
    let dir = home.join("fabric");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let mut nats = start_nats(&dir, port)?;
    wait_for_port(port, Duration::from_secs(10))
        .await
        .with_context(|| format!("nats-server did not start; see {}", dir.join("nats.log").display()))?;
    let url = format!("nats://127.0.0.1:{port}");
    std::fs::write(dir.join("nats.url"), format!("{url}\n"))?;
    println!("nats-server with JetStream listening at {url} (log: {})", dir.join("nats.log").display());

    let exe = std::env::current_exe().context("cannot find the quloud executable")?;
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let data = dir.join(format!("node-{i}"));
        let log = dir.join(format!("node-{i}.log"));
        let child = Command::new(&exe)
            .args(["node", "--nats", &url, "--capacity", &args.node_capacity.to_string(), "--data"])
            .arg(&data)
            // K nodes cannot share one metrics address; `--metrics` of `up` is the mount's.
            .env_remove("QULOUD_NODE_METRICS")
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .process_group(0) // see `start_nats`
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a storage node")?;
        nodes.push(child);
    }
    println!("{} storage nodes started (data and logs under {})", args.nodes, dir.display());

    let bus = super::Bus::url(&url);
    let outcome = match run_check(&bus, 16 << 20, args.mount.replicas).await {
        Ok(report) => {
            println!("fabric check passed:");
            report.print();
            Ok(())
        }
        Err(e) => Err(e.context(format!("the fabric check failed; see the logs in {}", dir.display()))),
    };
    let outcome = match (outcome, &args.mountpoint) {
        (Ok(()), Some(mp)) if !args.once => {
            println!("\nFabric is up at {url}. Mounting your vault…");
            super::mount::mount(home, &bus, mp, &args.mount).await
        }
        (Ok(()), None) if !args.once => {
            println!("\nFabric is up. Connect with --nats {url}. Press Ctrl-C to stop.");
            let cancel = CancellationToken::new();
            cancel_on_signal(cancel.clone()).await;
            Ok(())
        }
        (o, _) => o,
    };
    println!("stopping storage nodes and nats-server…");
    for n in &mut nodes {
        stop(n).await;
    }
    stop(&mut nats).await;
    outcome
}

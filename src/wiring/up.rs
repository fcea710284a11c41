//! `quloud up`: a one-machine fabric — nats-server with JetStream on a loopback port and K
//! local storage nodes, all under `--home`/fabric — checked with a round trip, then served until
//! Ctrl-C or SIGTERM, and stopped in order (mount, nodes, broker) whenever the signal comes.
//!
//! One `up` per home (`up_lock`); the children die with `up` and are watched and restarted
//! while serving (`children`).

use super::check::run_check;
use super::common::{key_path, signal_token, Bus};
use super::keys::init;
use crate::adapters::process::children::{Children, Exited, Spec};
use crate::adapters::process::up_lock::{previous_port, stop_leftovers, url_file, FabricLock};
use crate::cli::UpArgs;
use anyhow::{anyhow, bail, Context, Result};
use std::future::Future;
use std::path::{Path, PathBuf};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Go's garbage-collector target for the nats-server `up` starts, unless `GOGC` is set. At Go's
/// default (100) a 1 GiB store made nats-server spend ~1.5 CPU-s more (of ~9) collecting the
/// chunk bodies passing through; at 400 its peak RSS went from 123 to 294 MiB
/// (docs/PERFORMANCE.md §3).
pub const NATS_GOGC: &str = "400";

/// Writes a nats-server config with JetStream under `dir`; the broker's spec.
fn nats_spec(dir: &Path, port: u16) -> Result<Spec> {
    std::fs::create_dir_all(dir.join("jetstream"))?;
    let conf = dir.join("nats.conf");
    let text = format!(
        "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n}}\n",
        dir.join("jetstream").display()
    );
    std::fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
    nats_server_spec(dir, conf, port)
}

/// A supervised nats-server run with config `conf`, listening on `port`, logging to
/// `dir`/nats.log (the one-machine fabric, the hub and a house's leaf server).
pub(super) fn nats_server_spec(dir: &Path, conf: PathBuf, port: u16) -> Result<Spec> {
    let Some(bin) = which("nats-server") else {
        bail!("nats-server not found on PATH: install it with `sudo apt-get install -y nats-server`");
    };
    let command = move || {
        let mut cmd = Command::new(&bin);
        if std::env::var_os("GOGC").is_none() {
            cmd.env("GOGC", NATS_GOGC);
        }
        cmd.arg("-c").arg(&conf);
        Ok(cmd)
    };
    Ok(Spec {
        name: "nats-server".into(),
        log: dir.join("nats.log"),
        port: Some(port),
        command: Box::new(command),
    })
}

/// Storage node `i`, with its data under `dir`/node-`i`.
fn node_spec(dir: &Path, i: usize, url: &str, capacity: u64) -> Result<Spec> {
    let exe = std::env::current_exe().context("cannot find the quloud executable")?;
    let (data, url) = (dir.join(format!("node-{i}")), url.to_string());
    let command = move || {
        let mut cmd = Command::new(&exe);
        cmd.args(["node", "--nats", &url, "--capacity", &capacity.to_string(), "--data"])
            .arg(&data)
            // K nodes cannot share one metrics address; `--metrics` of `up` is the mount's.
            .env_remove("QULOUD_NODE_METRICS");
        Ok(cmd)
    };
    let log = dir.join(format!("node-{i}.log"));
    Ok(Spec { name: format!("node-{i}"), log, port: None, command: Box::new(command) })
}

/// `--port`, else the previous run's port if it is free, else a free one.
fn choose_port(dir: &Path, flag: Option<u16>) -> Result<u16> {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    if let Some(port) = flag {
        if !free(port) {
            bail!(
                "port {port} (--port) is taken on 127.0.0.1 (by another nats-server or program?): \
                 choose another, or leave --port out to reuse the previous run's port or take a free one"
            );
        }
        return Ok(port);
    }
    match previous_port(dir) {
        Some(port) if free(port) => Ok(port),
        previous => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
            let port = l.local_addr()?.port();
            if let Some(old) = previous {
                println!("port {old} of the previous run is taken; nats-server moves to {port}");
            }
            Ok(port)
        }
    }
}

/// `quloud up` of the one-machine fabric (the hub and a house are `hub::up_hub` and
/// `house::up_house`).
pub(super) async fn up(home: &Path, args: UpArgs) -> Result<()> {
    // First of all: from here on a signal is ours to handle, at any phase.
    let stop = signal_token();
    if !key_path(home).exists() {
        if args.mountpoint.is_some() {
            init(home)?;
            println!();
        } else {
            println!("{}\n", fabric_only(home));
        }
    }
    let dir = home.join("fabric");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let _lock = FabricLock::acquire(&dir)?;
    stop_leftovers(&dir).await?;
    let mut children = Children::default();
    let outcome = run(home, &dir, &args, &mut children, &stop).await;
    println!("stopping storage nodes and nats-server…");
    children.stop_all().await;
    outcome
}

/// What `up` without a mountpoint says on a home with no master key: it runs the fabric only
/// and creates no key (a second paper key during a recovery invites writing down the wrong one).
fn fabric_only(home: &Path) -> String {
    format!(
        "no vault key in {}: running the fabric only, no vault is mounted and no key is created. \
         To mount a vault here: `quloud up MOUNTPOINT` (or `quloud init`) creates a new one, \
         `quloud restore MOUNTPOINT --key-file paper.txt` brings yours back.",
        home.display()
    )
}

/// Starts the fabric, checks it and serves until `stop`; leaves stopping it to the caller.
async fn run(
    home: &Path,
    dir: &Path,
    args: &UpArgs,
    children: &mut Children,
    stop: &CancellationToken,
) -> Result<()> {
    let port = choose_port(dir, args.port)?;
    let url = format!("nats://127.0.0.1:{port}");
    let nats = nats_spec(dir, port)?;
    let nats_log = nats.log.clone();
    unless_stopped(stop, children.start(nats)).await?;
    std::fs::write(url_file(dir), format!("{url}\n"))?;
    println!("nats-server with JetStream listening at {url} (log: {})", nats_log.display());
    for i in 0..args.nodes {
        unless_stopped(stop, children.start(node_spec(dir, i, &url, args.node_capacity)?)).await?;
    }
    println!("{} storage nodes started (data and logs under {})", args.nodes, dir.display());
    if args.mount.replicas > args.nodes {
        println!(
            "warning: --replicas {} needs {} distinct nodes but only {} run here: the fabric check \
             (and every upload) waits for nodes to join, up to --check-within ({:?}); pass --nodes {} \
             or --replicas {}",
            args.mount.replicas,
            args.mount.replicas,
            args.nodes,
            args.check_within,
            args.mount.replicas,
            args.nodes
        );
    }
    let bus = Bus::url(&url);
    check(dir, &bus, args, children, stop).await?;
    if args.once {
        return Ok(());
    }
    match &args.mountpoint {
        Some(mp) => {
            println!("\nFabric is up at {url}. Mounting your vault…");
            println!(
                "replicas: all {} on this machine's nodes, one house (--allow-own-house): this copy \
                 dies with the machine; back up to friends' houses for that (docs/OPERATIONS.md)",
                args.mount.replicas
            );
            let opts = crate::cli::MountOpts { allow_own_house: true, ..args.mount.clone() };
            serve(children, stop, super::mount::mount(home, &bus, mp, &opts, stop)).await
        }
        None => {
            println!("\nFabric is up. Connect with --nats {url}. Press Ctrl-C to stop.");
            let until_stopped = async {
                stop.cancelled().await;
                Ok(())
            };
            serve(children, stop, until_stopped).await
        }
    }
}

pub(super) async fn unless_stopped<T>(
    stop: &CancellationToken,
    step: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = step => r,
        _ = stop.cancelled() => bail!("stopped by a signal before the fabric was up"),
    }
}

/// The round trip through the new fabric, bounded by `--check-within`; fails at once if a child
/// exits meanwhile.
async fn check(
    dir: &Path,
    bus: &Bus,
    args: &UpArgs,
    children: &mut Children,
    stop: &CancellationToken,
) -> Result<()> {
    let within = args.check_within;
    let round_trip = tokio::time::timeout(within, run_check(bus, 16 << 20, args.mount.replicas));
    let failed = tokio::select! {
        r = round_trip => match r {
            Ok(Ok(report)) => {
                println!("fabric check passed:");
                print!("{}", crate::render::check_text(&report));
                return Ok(());
            }
            Ok(Err(e)) => e.context(format!("the fabric check failed; see nats.log and node-*.log in {}", dir.display())),
            Err(_) => anyhow!(
                "the fabric check did not finish within {within:?} (--check-within): the nodes may be \
                 failing to store; see nats.log and node-*.log in {}",
                dir.display()
            ),
        },
        exited = children.exited() => anyhow!("the fabric check cannot finish: {}", exited.describe()),
        _ = stop.cancelled() => anyhow!("stopped by a signal during the fabric check"),
    };
    Err(failed)
}

/// Runs `serving` (the mount, or waiting for `stop`) while watching the children: one that
/// exits is reported and restarted; if the broker cannot be, `up` stops.
pub(super) async fn serve(
    children: &mut Children,
    stop: &CancellationToken,
    serving: impl Future<Output = Result<()>>,
) -> Result<()> {
    tokio::pin!(serving);
    let mut failure = None;
    loop {
        tokio::select! {
            r = &mut serving => return match failure {
                Some(e) => Err(e),
                None => r,
            },
            exited = children.exited() => {
                if let Err(e) = on_exit(children, exited).await {
                    tracing::error!("{e:#}; stopping `quloud up`");
                    failure = Some(e);
                    stop.cancel();
                }
            }
        }
    }
}

/// Reports a child that exited while serving and restarts it. An error only when the broker is
/// gone for good.
async fn on_exit(children: &mut Children, exited: Exited) -> Result<()> {
    let (name, broker) = (exited.spec.name.clone(), exited.spec.port.is_some());
    if broker {
        tracing::error!(
            "{}\nthe fabric is down: a mount keeps serving cached and staged data and keeps new \
             writes, which it uploads once the broker is back; restarting nats-server on the same \
             port and store",
            exited.describe()
        );
    } else {
        tracing::error!("{}\nrestarting {name}", exited.describe());
    }
    match children.restart(exited).await {
        Ok(()) if broker => {
            println!("nats-server is back; the nodes and the mount reconnect by themselves");
            Ok(())
        }
        Ok(()) => Ok(()),
        Err(e) if broker => Err(e.context("the fabric is down: cannot restart nats-server")),
        Err(e) => {
            let others = children.running("node-");
            tracing::error!("{e:#}; giving up on {name}: {others} other nodes keep serving");
            Ok(())
        }
    }
}

//! `quloud up --hub`: the hub of friends' houses — nats-server with JetStream (domain `hub`) and
//! TLS on a public client port and a leaf-node port, one NATS user per house — and the membership
//! service, which answers enrolment requests, lists the houses' certificates to owners and
//! records when each house was last seen.
//!
//! Everything lives under HOME/hub: the CA and server certificate (made on first run), the
//! membership key (`hub.key`, signs house certificates), `hub.json` (ports and public name),
//! `members.json` (the register) and the server's config, log and JetStream store.

use super::common::signal_token;
use super::files;
use super::keys::load_or_create_identity;
use super::up::{nats_server_spec, unless_stopped};
use crate::adapters::clock::SystemClock;
use crate::adapters::hub::conf::{hub_config, HubSettings, ENROL_SUBJECT, JS_DOMAIN};
use crate::adapters::hub::tls::{ensure_certificates, HubTls};
use crate::adapters::hub::{leaf_subscriptions, write_private_atomic, RegisterFile};
use crate::adapters::nats::{connect, BrokerConfig, HOUSES_SUBJECT};
use crate::adapters::process::children::{Children, Spec};
use crate::adapters::process::up_lock::FabricLock;
use crate::cli::UpArgs;
use crate::domain::identity::NodeIdentity;
use crate::domain::membership::{EnrolReply, EnrolRequest, Register};
use crate::domain::placement::{HouseListing, HousesReply};
use crate::ports::clock::Clock;
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest enrolment request read (a request is a few hundred bytes).
const MAX_REQUEST: usize = 16 << 10;
/// How often the membership service asks the hub which houses are connected.
const SEEN_EVERY: Duration = Duration::from_secs(5);

/// The hub's directory in `home`.
pub fn hub_dir(home: &Path) -> PathBuf {
    home.join("hub")
}

/// Seconds since the Unix epoch, from the clock.
pub fn now_secs() -> u64 {
    SystemClock.now_ms() / 1000
}

/// The hub's settings (`hub.json`), or why this home is no hub.
pub fn load_settings(dir: &Path) -> Result<HubSettings> {
    let path = dir.join("hub.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a hub: run `quloud up --hub --public HOST` here first (or pass --home)",
            dir.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
}

/// The NATS users of the houses the hub accepts: when they change, the hub's nats-server is
/// restarted with the new config. A reload is not enough: nats-server 2.9 neither closes the
/// leaf connection of a user a reload removed nor, after a reload that changed the account's
/// users, passes interest between leaf connections made before and after it.
type Users = Vec<(String, String)>;

fn users(register: &Register) -> Users {
    register.active().map(|h| (h.user.clone(), h.password.clone())).collect()
}

/// Writes the hub's nats-server config for `register`.
pub fn apply(dir: &Path, register: &Register) -> Result<()> {
    let settings = load_settings(dir)?;
    let conf = hub_config(dir, &settings, &HubTls::at(dir), register);
    write_private_atomic(&dir.join("nats.conf"), conf.as_bytes())
}

fn settings(dir: &Path, args: &UpArgs) -> Result<HubSettings> {
    let public = args.role.public.clone().unwrap_or_default();
    if public.is_empty() || public.contains([' ', '/', ':', '@']) {
        bail!("--public must be the hub's DNS name or IPv4 address as friends reach it, not {public:?}");
    }
    let password = match load_settings(dir) {
        Ok(old) => old.password,
        Err(_) => {
            let mut b = [0u8; 24];
            crate::domain::random_bytes(&mut b);
            crate::domain::ids::to_hex(&b)
        }
    };
    let s = HubSettings {
        public,
        port: args.port.unwrap_or(4222),
        leaf_port: args.role.leaf_port,
        monitor_port: args.role.monitor_port,
        password,
    };
    write_private_atomic(&dir.join("hub.json"), serde_json::to_string_pretty(&s)?.as_bytes())?;
    Ok(s)
}

fn nats_spec(dir: &Path, port: u16) -> Result<Spec> {
    nats_server_spec(dir, dir.join("nats.conf"), port)
}

/// Runs `quloud up --hub` until SIGINT/SIGTERM.
pub(super) async fn up_hub(home: &Path, args: UpArgs) -> Result<()> {
    let stop = signal_token();
    let dir = hub_dir(home);
    files::create_private_dir(&dir)?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let _lock = FabricLock::acquire(&dir)?;
    let s = settings(&dir, &args)?;
    ensure_certificates(&dir, &s.public)?;
    let key = load_or_create_identity(&dir.join("hub.key"))?;
    std::fs::create_dir_all(dir.join("jetstream"))?;
    let register = RegisterFile::lock(&dir)?.load()?;
    apply(&dir, &register)?;
    let mut children = Children::default();
    let outcome = async {
        unless_stopped(&stop, children.start(nats_spec(&dir, s.port)?)).await?;
        println!(
            "hub listening at tls://{}:{} (leaf nodes: port {}, JetStream domain {JS_DOMAIN}; log: {})",
            s.public,
            s.port,
            s.leaf_port,
            dir.join("nats.log").display()
        );
        println!("invite a friend's box with `quloud invite NAME`; Ctrl-C stops the hub");
        serve_hub(&mut children, &stop, Service { dir: &dir, s: &s, key, applied: users(&register) }).await
    }
    .await;
    println!("stopping nats-server…");
    children.stop_all().await;
    outcome
}

/// Runs the membership service while watching nats-server: restarted when it exits (within
/// the budget) and when the houses' users change.
async fn serve_hub(children: &mut Children, stop: &CancellationToken, service: Service<'_>) -> Result<()> {
    let (restart_tx, mut restart_rx) = mpsc::channel(4);
    let service = service.run(stop, restart_tx);
    tokio::pin!(service);
    loop {
        tokio::select! {
            r = &mut service => return r,
            Some(()) = restart_rx.recv() => {
                children.restart_now("nats-server").await.context("cannot restart the hub's nats-server")?;
                println!("nats-server restarted with the houses' new credentials");
            }
            exited = children.exited() => {
                tracing::error!("{}; restarting it", exited.describe());
                children.restart(exited).await.context("the hub is down: cannot restart nats-server")?;
            }
        }
    }
}

/// The membership service.
struct Service<'a> {
    dir: &'a Path,
    s: &'a HubSettings,
    key: NodeIdentity,
    /// The houses' users nats-server runs with.
    applied: Users,
}

impl Service<'_> {
    /// Answers enrolment requests, records last-seen times and has nats-server restarted when
    /// the houses' users change (a join here, a `quloud revoke`), until `stop`.
    async fn run(mut self, stop: &CancellationToken, restart: mpsc::Sender<()>) -> Result<()> {
        let broker = BrokerConfig {
            servers: vec![format!("tls://hub:{}@127.0.0.1:{}", self.s.password, self.s.port)],
            ca: Some(self.dir.join("ca.pem")),
            ..Default::default()
        };
        let Some(client) = connect_until_stopped(&broker, stop).await else { return Ok(()) };
        let mut requests = client.subscribe(ENROL_SUBJECT).await?;
        let mut listings = client.subscribe(HOUSES_SUBJECT).await?;
        let mut tick = tokio::time::interval(SEEN_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    if let Err(e) = record_seen(self.dir, self.s.monitor_port).await {
                        tracing::warn!("cannot tell which houses are connected: {e:#}");
                    }
                }
                msg = requests.next() => {
                    let Some(msg) = msg else { bail!("the hub's own connection to nats-server closed") };
                    let Some(reply) = msg.reply.clone() else { continue };
                    let answer = enrol(self.dir, &self.key, &msg.payload);
                    if let Err(e) = client.publish(reply, serde_json::to_vec(&answer)?.into()).await {
                        tracing::warn!("cannot answer an enrolment request: {e}");
                    }
                    let _ = client.flush().await;
                }
                msg = listings.next() => {
                    let Some(msg) = msg else { bail!("the hub's own connection to nats-server closed") };
                    let Some(reply) = msg.reply.clone() else { continue };
                    match houses_listing(self.dir) {
                        Ok(listing) => {
                            if let Err(e) = client.publish(reply, serde_json::to_vec(&listing)?.into()).await {
                                tracing::warn!("cannot answer a request for the houses' certificates: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("cannot read the register to list the houses: {e:#}"),
                    }
                    continue;
                }
            }
            self.sync(&restart).await?;
        }
    }

    /// Restarts nats-server with the register's users when they differ from those it runs with.
    async fn sync(&mut self, restart: &mpsc::Sender<()>) -> Result<()> {
        let register = RegisterFile::lock(self.dir)?.load()?;
        let now = users(&register);
        if now != self.applied {
            apply(self.dir, &register)?;
            self.applied = now;
            restart.send(()).await.context("the hub's supervisor stopped")?;
        }
        Ok(())
    }
}

/// Connects the membership service to the hub's own nats-server, retrying every second until it
/// answers or the hub stops (`None`). A hub is a long-lived service: a server slow to accept its
/// first client after a restart (JetStream recovering its store) must not stop it.
async fn connect_until_stopped(
    broker: &BrokerConfig,
    stop: &CancellationToken,
) -> Option<async_nats::Client> {
    let mut failures = 0u32;
    loop {
        match connect(broker, "quloud-hub").await {
            Ok((client, _, _)) => {
                if failures > 0 {
                    tracing::info!(
                        "the membership service reached nats-server after {failures} failed attempts"
                    );
                }
                return Some(client);
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(
                    "the membership service cannot reach the hub's nats-server yet: {e}; retrying"
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The certificates of the houses the hub accepts, each with how long ago the hub last saw the
/// house connected: what owners count replicas by (docs/PROTOCOL.md 4.14).
fn houses_listing(dir: &Path) -> Result<HousesReply> {
    let register = RegisterFile::lock(dir)?.load()?;
    let now = now_secs();
    let houses = register
        .active()
        .flat_map(|h| {
            let seen_ago = (h.last_seen > 0).then(|| now.saturating_sub(h.last_seen));
            h.nodes.iter().map(move |cert| HouseListing { cert: cert.clone(), seen_ago })
        })
        .collect();
    Ok(HousesReply { houses })
}

/// One enrolment: the register spends the invite, the house's user enters the config.
fn enrol(dir: &Path, key: &NodeIdentity, payload: &[u8]) -> EnrolReply {
    let refused = |why: String| {
        tracing::warn!("enrolment refused: {why}");
        EnrolReply::Refused(why)
    };
    if payload.len() > MAX_REQUEST {
        return refused("the request is too large".into());
    }
    let request: EnrolRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => return refused(format!("malformed enrolment request: {e}")),
    };
    let done = (|| -> Result<EnrolReply> {
        let file = RegisterFile::lock(dir)?;
        let mut register = file.load()?;
        let house = match register.enrol(&request, key, now_secs()) {
            Ok(h) => h.clone(),
            Err(e) => return Ok(refused(e.to_string())),
        };
        file.save(&register)?;
        println!("house {} joined (node {})", house.name, house.nodes[0].node);
        let cert = house.nodes[0].clone();
        Ok(EnrolReply::Enrolled { cert, user: house.user, js_domain: JS_DOMAIN.into() })
    })();
    done.unwrap_or_else(|e| refused(format!("the hub failed to record the house: {e:#}")))
}

/// Marks the houses one of whose nodes listens through a leaf connection now as seen.
async fn record_seen(dir: &Path, monitor_port: u16) -> Result<()> {
    let subs = leaf_subscriptions(monitor_port).await?;
    let file = RegisterFile::lock(dir)?;
    let mut register = file.load()?;
    let now = now_secs();
    let mut changed = false;
    for house in register.houses.iter_mut().filter(|h| !h.revoked) {
        if house.nodes.iter().any(|c| subs.contains(&format!("quloud.v1.node.{}.>", c.node))) {
            house.last_seen = now;
            changed = true;
        }
    }
    if changed {
        file.save(&register)?;
    }
    Ok(())
}

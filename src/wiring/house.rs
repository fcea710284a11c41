//! A house: what `quloud join` writes into HOME/house (`house.json`, the leaf node's config, the
//! hub's CA, the node's key) and `quloud up --house`, which runs the house's nats-server as a
//! leaf node of the hub, its storage node and, when it backs up, the vault's mount.

use super::common::{key_path, load_master_key, signal_token, Bus};
use super::house_config::{house_dir, load_house, HouseConfig};
use super::up::{nats_server_spec, serve, unless_stopped};
use crate::adapters::process::children::{Children, Spec};
use crate::adapters::process::up_lock::FabricLock;
use crate::cli::UpArgs;
use crate::domain::ids::AckToken;
use anyhow::{Context, Result};
use std::path::Path;
use tokio::process::Command;

fn leaf_spec(dir: &Path, port: u16) -> Result<Spec> {
    nats_server_spec(dir, dir.join("leaf.conf"), port)
}

/// The house's storage node; `own_vault`: the ack token of the vault backed up from this house,
/// whose store requests the node leaves to other houses.
fn node_spec(dir: &Path, cfg: &HouseConfig, own_vault: Option<AckToken>) -> Result<Spec> {
    let exe = std::env::current_exe().context("cannot find the quloud executable")?;
    let url = format!("nats://127.0.0.1:{}", cfg.port);
    let (data, key, domain, capacity) =
        (dir.join("node"), dir.join("node.key"), cfg.js_domain.clone(), cfg.capacity);
    let command = move || {
        let mut cmd = Command::new(&exe);
        cmd.args(["node", "--nats", &url, "--js-domain", &domain, "--capacity", &capacity.to_string()])
            .arg("--data")
            .arg(&data)
            .arg("--key")
            .arg(&key);
        if let Some(token) = own_vault {
            cmd.arg("--own-vault").arg(token.to_hex());
        }
        Ok(cmd)
    };
    Ok(Spec { name: "node".into(), log: dir.join("node.log"), port: None, command: Box::new(command) })
}

/// The ack token of the vault this house backs up (its home holds the vault key), unless the
/// mount may keep replicas in its own house (`--allow-own-house`).
fn own_vault(home: &Path, args: &UpArgs) -> Result<Option<AckToken>> {
    if args.mount.allow_own_house || !key_path(home).exists() {
        return Ok(None);
    }
    Ok(Some(load_master_key(home)?.derive().ack_token()))
}

/// Runs `quloud up --house` until SIGINT/SIGTERM.
pub(super) async fn up_house(home: &Path, args: UpArgs) -> Result<()> {
    let stop = signal_token();
    let cfg = load_house(home)?;
    let dir = house_dir(home).canonicalize()?;
    let _lock = FabricLock::acquire(&dir)?;
    let mut children = Children::default();
    let outcome = async {
        unless_stopped(&stop, children.start(leaf_spec(&dir, cfg.port)?)).await?;
        unless_stopped(&stop, children.start(node_spec(&dir, &cfg, own_vault(home, &args)?)?)).await?;
        let url = format!("nats://127.0.0.1:{}", cfg.port);
        println!(
            "house {} is up: nats-server at {url} is a leaf node of {}, storage node {} offers {} (logs in {})",
            cfg.name,
            cfg.leaf,
            cfg.cert.node,
            crate::domain::size::format_size(cfg.capacity),
            dir.display()
        );
        match args.mountpoint.as_ref().or(cfg.vault.as_ref()) {
            Some(mp) => {
                let mut bus = Bus::url(&url);
                bus.broker.js_domain = Some(cfg.js_domain.clone());
                println!("mounting your vault at {}…", mp.display());
                serve(&mut children, &stop, super::mount::mount(home, &bus, mp, &args.mount, &stop)).await
            }
            None => {
                println!("connect local clients with --nats {url} --js-domain {}; Ctrl-C stops", cfg.js_domain);
                serve(&mut children, &stop, async {
                    stop.cancelled().await;
                    Ok(())
                })
                .await
            }
        }
    }
    .await;
    println!("stopping the house…");
    children.stop_all().await;
    outcome
}

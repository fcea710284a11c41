//! A house's configuration: what `quloud join` writes to HOME/house/house.json and every role
//! of the box (`up --house`, the mount's placement) reads back.

use crate::domain::house::{HouseCert, HouseName};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How this box joined its hub (`HOME/house/house.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HouseConfig {
    /// The house's name.
    pub name: HouseName,
    /// The hub's client and leaf addresses (`HOST:PORT`).
    pub hub: String,
    /// The hub's leaf-node address.
    pub leaf: String,
    /// The hub's membership key (hex): it signs house certificates.
    pub hub_key: String,
    /// The hub's certificate binding this house's node to it.
    pub cert: HouseCert,
    /// The hub's JetStream domain.
    pub js_domain: String,
    /// Loopback port of the house's nats-server.
    pub port: u16,
    /// Storage offered, bytes.
    pub capacity: u64,
    /// Where `up --house` mounts the vault of this home, if it backs up.
    pub vault: Option<PathBuf>,
}

/// The house's directory in `home`.
pub fn house_dir(home: &Path) -> PathBuf {
    home.join("house")
}

/// The house's configuration, or why this home is no house.
pub fn load_house(home: &Path) -> Result<HouseConfig> {
    let path = house_dir(home).join("house.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!("{} has joined no hub: run `quloud join INVITE` first (or pass --home)", home.display())
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
}

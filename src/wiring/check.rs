//! `quloud check`: the fabric check (`app::check`) over a NATS connection with a throwaway vault
//! key and a one-hour lease (in a house, with the check token the house's permissions name).

use super::common::Bus;
use crate::adapters::nats::fabric::NatsFabric;
use crate::app::check::round_trip;
use crate::app::report::CheckReport;
use crate::domain::ids::AckToken;
use crate::domain::keys::MasterKey;
use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::Duration;

/// Connects to the fabric of `bus` and runs the check: `size` random bytes with `replicas`
/// replicas, read back, audited and deleted.
pub async fn run_check(bus: &Bus, size: u64, replicas: usize) -> Result<CheckReport> {
    run_check_as(bus, None, size, replicas).await
}

/// [`run_check`] with acks on `token` instead of the throwaway vault's own (in a house: the
/// check token its NATS permissions name).
pub async fn run_check_as(
    bus: &Bus,
    token: Option<AckToken>,
    size: u64,
    replicas: usize,
) -> Result<CheckReport> {
    if replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let keys = Arc::new(MasterKey::generate().derive());
    let mut opts = bus.fabric_options();
    opts.lease = Duration::from_secs(3600);
    let fabric = NatsFabric::connect(token.unwrap_or_else(|| keys.ack_token()), opts, None).await?;
    let report = round_trip(&fabric, keys, size, replicas).await?;
    if let Err(e) = fabric.delete_ack_consumer().await {
        tracing::debug!(error = %e, "could not remove the check's ack consumer");
    }
    Ok(report)
}

//! The vault's view of friends' houses: the placement facts it verified in the hub's house
//! certificates (refreshed in the background by [`run_houses`]), and what they mean for uploads,
//! healing and `quloud status`. A vault outside a house has no policy: every node counts.

use super::Vault;
use crate::app::report::PlacementStatus;
use crate::domain::fs::Replica;
use crate::domain::placement::{HousePolicy, OwnHouse, Placement};
use crate::ports::fabric::ChunkFabric;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the hub's certificates are fetched again (new houses, revoked ones).
pub const HOUSES_EVERY: Duration = Duration::from_secs(10);

/// What the vault knows of houses.
#[derive(Debug, Default)]
pub(super) struct Houses {
    /// The placement facts last verified; `None` until the hub first answered.
    current: Mutex<Option<Arc<Placement>>>,
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// The placement facts replicas are counted by: `None` outside a house.
    pub(super) fn placement(&self) -> Option<Arc<Placement>> {
        Self::lock(&self.houses.current).clone()
    }

    /// Why chunks cannot be made durable now, when the vault lives in a house and too few
    /// eligible houses are reachable (or the hub has not answered yet).
    pub fn placement_blocked(&self) -> Option<String> {
        self.opts.houses.as_ref()?;
        match self.placement() {
            None => Some("waiting for the hub's list of house certificates".into()),
            Some(p) => p.shortfall(self.opts.replicas).map(|s| s.to_string()),
        }
    }

    /// The replicas of `replicas` (healthy ones, in order of preference) that count by houses.
    pub(super) fn placed<'r>(&self, replicas: Vec<&'r Replica>) -> Vec<&'r Replica> {
        if self.opts.houses.is_none() {
            return replicas;
        }
        let Some(p) = self.placement() else { return Vec::new() };
        let counted = p.counted(replicas.iter().map(|r| r.node));
        replicas.into_iter().filter(|r| counted.contains(&r.node)).collect()
    }

    /// Fetches the hub's certificates and keeps the facts they prove.
    pub async fn refresh_houses(&self, fabric: &F) -> Result<(), crate::ports::fabric::FabricError> {
        let Some(policy) = self.opts.houses.clone() else { return Ok(()) };
        let listing = fabric.houses().await?;
        let placement = Placement::verify(policy, &listing);
        if placement.rejected() > 0 {
            tracing::warn!(
                rejected = placement.rejected(),
                "the hub listed house certificates that do not verify under its key; their nodes count for no house"
            );
        }
        *Self::lock(&self.houses.current) = Some(Arc::new(placement));
        self.pipeline.upload_work.notify_one();
        Ok(())
    }

    /// What `quloud status` says of placement.
    pub(super) fn placement_status(&self) -> Option<PlacementStatus> {
        let policy = self.opts.houses.as_ref()?;
        Some(PlacementStatus {
            own_house: policy.own.to_string(),
            own_house_allowed: policy.own_house == OwnHouse::Allowed,
            houses_reachable: self.placement().map(|p| p.reachable_houses()),
            waiting: self.placement_blocked(),
        })
    }
}

/// Keeps the vault's placement facts current until `cancel`: the hub's certificates are
/// fetched every [`HOUSES_EVERY`] while the fabric is connected; a failed fetch keeps the last
/// facts. Returns at once for a vault outside a house.
pub async fn run_houses<F: ChunkFabric + 'static>(vault: Arc<Vault<F>>, cancel: CancellationToken) {
    let Some(HousePolicy { own, .. }) = vault.opts.houses.clone() else { return };
    let mut said: Option<String> = None;
    loop {
        let fabric = tokio::select! {
            _ = cancel.cancelled() => return,
            f = vault.fabric_within(HOUSES_EVERY) => f,
        };
        if let Some(fabric) = fabric {
            if let Err(e) = vault.refresh_houses(&fabric).await {
                tracing::warn!(error = %e, "cannot fetch the hub's house certificates; keeping the last ones");
            }
            let now = vault.placement_blocked();
            if now != said {
                match &now {
                    Some(why) => tracing::warn!(house = %own, "uploads wait: {why}"),
                    None => tracing::info!(house = %own, "enough houses reachable: uploads go on"),
                }
                said = now;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(HOUSES_EVERY) => {}
            }
        }
    }
}

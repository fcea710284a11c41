//! The owner's request for the hub's list of house certificates (`quloud.v1.hub.houses`,
//! docs/PROTOCOL.md 4.14); the certificates are verified by the caller, never here.

use super::{HOUSES_SUBJECT, MAX_HOUSES_REPLY};
use crate::domain::placement::{HouseListing, HousesReply};
use crate::ports::fabric::FabricError;
use std::time::Duration;

/// Asks the hub's membership service for its listing, waiting up to `timeout`.
pub async fn fetch(client: &async_nats::Client, timeout: Duration) -> Result<Vec<HouseListing>, FabricError> {
    let req = async_nats::Request::new().timeout(Some(timeout));
    let msg = client.send_request(HOUSES_SUBJECT, req).await.map_err(|e| {
        FabricError::Broker(format!("the hub's membership service did not answer on {HOUSES_SUBJECT}: {e}"))
    })?;
    if msg.payload.len() > MAX_HOUSES_REPLY {
        return Err(FabricError::Broker("the hub's list of houses is too large".into()));
    }
    let reply: HousesReply = serde_json::from_slice(&msg.payload)
        .map_err(|e| FabricError::Broker(format!("the hub's list of houses is malformed: {e}")))?;
    Ok(reply.houses)
}

//! Use cases on the ports: the storage node's request handling and the vault's filesystem service.

pub mod fabric_checks;
pub mod metrics;
pub mod node;
pub mod rate;
pub mod replay;
pub mod vault;

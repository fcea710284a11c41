//! Use cases on the ports: the storage node's request handling, the vault's filesystem service,
//! the fabric check (`check`), and the reports they hand the CLI (`report`).

pub mod check;
pub mod fabric_checks;
pub mod metrics;
pub mod node;
pub mod rate;
pub mod replay;
pub mod report;
pub mod vault;

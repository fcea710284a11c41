//! Metrics and health over HTTP: the page writer over `prometheus-client` (`page`), a tiny
//! HTTP/1.1 server (`http`) and the collectors that read the app layer's counters at scrape time
//! (`node` for `quloud node`, `vault` for `quloud mount`). Opt-in (`--metrics ADDR`), loopback
//! unless told otherwise.

pub mod http;
pub mod node;
pub mod page;
pub mod vault;

use std::net::SocketAddr;

/// What the HTTP endpoint serves. Both methods may block (disk, manifest); the server calls them
/// on blocking threads.
pub trait Exporter: Send + Sync + 'static {
    /// The `/metrics` page in the Prometheus text format 0.0.4.
    fn metrics(&self) -> Result<String, MetricsError>;
    /// `Ok` when healthy; otherwise a one-line reason (`/healthz` answers 503 with it).
    fn health(&self) -> Result<(), String>;
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A non-loopback address without the explicit opt-in.
    #[error("refusing to serve metrics on {0}, which is not a loopback address: metrics reveal how much this machine stores and how busy it is; pass --metrics-public to serve them on every network that reaches {0}")]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen for metrics on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// A collector failed to write the page.
    #[error("cannot encode the metrics page")]
    Encode(#[from] std::fmt::Error),
}

fn now_ms() -> u64 {
    crate::domain::unix_ms(std::time::SystemTime::now())
}

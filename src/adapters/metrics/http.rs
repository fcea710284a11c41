//! A tiny HTTP/1.1 server for `GET /metrics` and `GET /healthz`: one request per connection,
//! the request head capped in size and in time, a bounded number of connections at once.
//! Anything else gets a short error status; nothing a client sends can make it panic.

use super::{Exporter, MetricsError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Bounds on what one client may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request head (request line and headers) read.
    pub max_head: usize,
    /// Time a client has to send its whole request head.
    pub read_timeout: Duration,
    /// Time a client has to take the response.
    pub write_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16,
        }
    }
}

/// Binds `addr`; a non-loopback address is refused unless `public`.
pub async fn bind(addr: SocketAddr, public: bool) -> Result<TcpListener, MetricsError> {
    if !addr.ip().is_loopback() && !public {
        return Err(MetricsError::NotLoopback(addr));
    }
    TcpListener::bind(addr).await.map_err(|e| MetricsError::Bind(addr, e))
}

/// Serves `exporter` on `listener` until `cancel` fires; then waits for open connections.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<dyn Exporter>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        while conns.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics endpoint busy; connection closed");
            continue;
        };
        let (exporter, cancel) = (exporter.clone(), cancel.clone());
        conns.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = handle(stream, exporter, limits) => {}
            }
            drop(permit);
        });
    }
    while conns.join_next().await.is_some() {}
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into(), allow: false }
    }

    fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// Why no request head could be read.
enum HeadError {
    TooLarge,
    Closed,
}

async fn handle(mut stream: TcpStream, exporter: Arc<dyn Exporter>, limits: Limits) {
    let head = tokio::time::timeout(limits.read_timeout, read_head(&mut stream, limits.max_head)).await;
    let (response, head_only) = match head {
        Err(_) => (Response::text("408 Request Timeout", "request timeout\n"), false),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => {
            (Response::text("431 Request Header Fields Too Large", "request head too large\n"), false)
        }
        Ok(Ok(head)) => route(&head, exporter).await,
    };
    let bytes = response.encode(head_only);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(limits.write_timeout, write).await {
        // Lingering close: read what the client still sends (a head cut off as too large, say)
        // for a moment, so closing with unread input does not reset the connection before the
        // client has read the response.
        let _ = tokio::time::timeout(LINGER, drain(&mut stream)).await;
    }
}

/// How long a closing connection's leftover input is read and discarded.
const LINGER: Duration = Duration::from_secs(1);

async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left = 256 * 1024usize;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Reads up to the blank line that ends a request head (`\r\n\r\n`, or `\n\n` from sloppy
/// clients); never more than `max` bytes.
async fn read_head(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        let tail = &buf[from..];
        let end = tail
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| from + i)
            .or_else(|| tail.windows(2).position(|w| w == b"\n\n").map(|i| from + i));
        if let Some(end) = end {
            if end > max {
                return Err(HeadError::TooLarge);
            }
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Answers one request head; the flag is true for HEAD (no body is sent).
async fn route(head: &[u8], exporter: Arc<dyn Exporter>) -> (Response, bool) {
    let bad = || (Response::text("400 Bad Request", "bad request\n"), false);
    let Ok(text) = std::str::from_utf8(head) else { return bad() };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad();
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return bad();
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Response::text("405 Method Not Allowed", "only GET and HEAD\n");
            r.allow = true;
            return (r, false);
        }
    };
    let path = target.split('?').next().unwrap_or_default();
    let response = match path {
        "/metrics" => {
            let page = tokio::task::spawn_blocking(move || exporter.metrics()).await;
            match page.map_err(|e| e.to_string()).and_then(|p| p.map_err(|e| e.to_string())) {
                Ok(body) => {
                    Response { status: "200 OK", content_type: super::page::CONTENT_TYPE, body, allow: false }
                }
                Err(e) => {
                    tracing::error!(error = %e, "rendering metrics failed");
                    Response::text("500 Internal Server Error", "rendering metrics failed\n")
                }
            }
        }
        "/healthz" => match tokio::task::spawn_blocking(move || exporter.health()).await {
            Ok(Ok(())) => Response::text("200 OK", "ok\n"),
            Ok(Err(why)) => Response::text("503 Service Unavailable", format!("{}\n", one_line(&why))),
            Err(e) => Response::text("503 Service Unavailable", format!("health check failed: {e}\n")),
        },
        _ => Response::text("404 Not Found", "not found: try /metrics or /healthz\n"),
    };
    (response, head_only)
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

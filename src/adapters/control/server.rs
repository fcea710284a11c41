//! Serves the control socket: one task per connection reads a request, runs the handler in a
//! task of its own (so a client that goes away never stops an audit half way), streams its
//! progress, and writes its reply.

use super::{frame, ControlError, Reply, Request, MAX_REQUEST};
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a client has to send its request once connected.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// Where a handler reports progress (`done` of `total`); the server sends it as
/// `Reply::Progress` lines while the client listens.
#[derive(Clone)]
pub struct Progress(mpsc::UnboundedSender<(u64, u64)>);

impl Progress {
    /// Reports `done` of `total`.
    pub fn report(&self, done: u64, total: u64) {
        let _ = self.0.send((done, total));
    }
}

/// The control socket, bound: `serve` answers on it.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's inode, so that only our own socket is removed at the end.
    ino: Option<u64>,
}

impl ControlServer {
    /// Binds the socket at `path` (replacing a stale one), readable by its owner only.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let ino = std::fs::metadata(path).map(|m| m.ino()).ok();
        Ok(ControlServer { listener, path: path.to_path_buf(), ino })
    }

    /// Answers every connection with `handler` until `cancel`, then removes the socket (unless
    /// another mount of the same home has bound a new one there meanwhile).
    pub async fn serve<H, Fut>(self, handler: H, cancel: CancellationToken)
    where
        H: Fn(Request, Progress) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        loop {
            let conn = tokio::select! {
                _ = cancel.cancelled() => break,
                c = self.listener.accept() => c,
            };
            match conn {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, handler.clone()));
                }
                Err(e) => tracing::debug!(error = %e, "control socket accept"),
            }
        }
        if std::fs::metadata(&self.path).map(|m| m.ino()).ok() == self.ino {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Answers one connection.
async fn answer<H, Fut>(stream: UnixStream, handler: H)
where
    H: Fn(Request, Progress) -> Fut,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let request =
        match tokio::time::timeout(REQUEST_WAIT, frame::read::<_, Request>(&mut reader, MAX_REQUEST)).await {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Ok(Some(r))) => r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "refused a control request");
                let _ = frame::write(
                    &mut write,
                    &Reply::Error { message: format!("cannot read the request: {e}") },
                )
                .await;
                return;
            }
        };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(handler(request, Progress(tx)));
    let mut listening = true;
    // Ends when the handler is done and has dropped its `Progress`.
    while let Some((done, total)) = rx.recv().await {
        if listening && frame::write(&mut write, &Reply::Progress { done, total }).await.is_err() {
            listening = false;
        }
    }
    let reply = task.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a control request failed");
        Reply::Error { message: format!("the request failed: {e}") }
    });
    if listening {
        if let Err(e) = frame::write(&mut write, &reply).await {
            tracing::debug!(error = %e, "the control client went away before the reply");
        }
    }
}

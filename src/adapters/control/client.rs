//! Asks the running mount over its control socket.

use super::{frame, ControlError, Reply, Request, MAX_REPLY};
use std::path::Path;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::UnixStream;

/// How long a client waits for the final reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// At most this long.
    Within(Duration),
    /// Until the mount answers or closes the connection: for a request that reports its
    /// progress (an audit), whose length the user watches.
    UntilDone,
}

/// A connection to a running mount.
pub struct ControlClient {
    stream: UnixStream,
}

impl ControlClient {
    /// Connects to the socket at `path`; an error when nothing listens there.
    pub async fn connect(path: &Path) -> Result<ControlClient, ControlError> {
        Ok(ControlClient { stream: UnixStream::connect(path).await? })
    }

    /// Sends `request` and returns the final reply, telling `progress` of each
    /// `Reply::Progress` on the way.
    pub async fn ask(
        self,
        request: &Request,
        wait: Wait,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Reply, ControlError> {
        let exchange = exchange(self.stream, request, progress);
        match wait {
            Wait::UntilDone => exchange.await,
            Wait::Within(d) => {
                tokio::time::timeout(d, exchange).await.map_err(|_| ControlError::TimedOut(d))?
            }
        }
    }
}

async fn exchange(
    stream: UnixStream,
    request: &Request,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Reply, ControlError> {
    let (read, mut write) = stream.into_split();
    frame::write(&mut write, request).await?;
    let mut reader = BufReader::new(read);
    loop {
        match frame::read::<_, Reply>(&mut reader, MAX_REPLY).await? {
            None => return Err(ControlError::Closed),
            Some(Reply::Progress { done, total }) => progress(done, total),
            Some(reply) => return Ok(reply),
        }
    }
}

/// Whether something listens on the socket at `path` (a mount, perhaps slow to answer).
pub async fn listening(path: &Path) -> bool {
    UnixStream::connect(path).await.is_ok()
}

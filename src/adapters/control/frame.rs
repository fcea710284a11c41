//! One message per line: compact JSON and `\n`, read back with a bound on its length.

use super::ControlError;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Writes `msg` as one line.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &impl Serialize,
) -> Result<(), ControlError> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one line of at most `max` bytes (its `\n` aside) and decodes it; `None` at the end of
/// the stream. A last line without `\n` counts.
pub(super) async fn read<R, T>(r: &mut R, max: usize) -> Result<Option<T>, ControlError>
where
    R: AsyncBufRead + Unpin,
    T: DeserializeOwned,
{
    let mut line = Vec::new();
    let n = (&mut *r).take(max as u64 + 1).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() > max {
        return Err(ControlError::TooLong { max });
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

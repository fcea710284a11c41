//! The one place that maps the vault's errors to the errno values the kernel returns to callers.

use crate::app::vault::FsError;
use fuser::Errno;

/// The errno for a vault error. Errors that become `EIO` are logged (within the request's span),
/// since the caller only sees "Input/output error".
pub fn errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::Invalid(_) => Errno::EINVAL,
        FsError::NoXattr => Errno::NO_XATTR,
        FsError::Range => Errno::ERANGE,
        FsError::Unavailable(why) => {
            tracing::warn!(%why, "data unavailable; check the NATS connection and that storage nodes are up");
            Errno::EIO
        }
        FsError::Io(why) => {
            tracing::warn!(%why, "local I/O error; check the vault's disk and its logs");
            Errno::EIO
        }
        FsError::NoSpace(why) => {
            tracing::debug!(%why, "no space left on the vault's home");
            Errno::ENOSPC
        }
        FsError::NotSupported => Errno::EOPNOTSUPP,
        FsError::ReadOnly => Errno::EROFS,
        FsError::Permission => Errno::EPERM,
        FsError::Access => Errno::EACCES,
        FsError::BadHandle => Errno::EBADF,
    }
}

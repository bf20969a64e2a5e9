//! Errors of filesystem operations, and the one place they become errnos.

use fuser::Errno;
use lazy_cache::CacheError;

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No such inode or name.
    #[error("no such entry")]
    NotFound,
    /// The operation needs a directory.
    #[error("not a directory")]
    NotDir,
    /// The operation needs a regular file.
    #[error("is a directory")]
    IsDir,
    /// The operation needs a symlink.
    #[error("not a symlink")]
    NotSymlink,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// The caller's buffer is too small.
    #[error("buffer too small")]
    Range,
    /// Reading content failed (fetch, timeout, verification, local store).
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl FsError {
    /// The errno the kernel gets: the only error → errno mapping of lazyfsd.
    pub fn errno(&self) -> Errno {
        match self {
            Self::NotFound => Errno::ENOENT,
            Self::NotDir => Errno::ENOTDIR,
            Self::IsDir => Errno::EISDIR,
            Self::NotSymlink => Errno::EINVAL,
            Self::NoAttr => Errno::NO_XATTR,
            Self::Range => Errno::ERANGE,
            Self::Cache(_) => Errno::EIO,
        }
    }
}

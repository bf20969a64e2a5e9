use std::path::PathBuf;

use lazy_format::ChunkDigest;

/// Why the cache could not deliver or keep data.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    /// The source failed (registry down, timeout, HTTP error).
    #[error("fetching {blob} bytes {start}..{end}: {reason}")]
    Fetch {
        /// Blob name.
        blob: String,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// The source's message.
        reason: String,
    },
    /// The source did not answer within the fetch timeout.
    #[error("fetching {blob} bytes {start}..{end}: no answer within {seconds} s")]
    Timeout {
        /// Blob name.
        blob: String,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// The timeout.
        seconds: u64,
    },
    /// Fetched bytes do not match the chunk's digest: never served, never cached.
    #[error("chunk {digest} of {blob} failed verification: {reason}")]
    Verification {
        /// The chunk.
        digest: ChunkDigest,
        /// Blob name.
        blob: String,
        /// What the decoder found.
        reason: String,
    },
    /// The local store failed (I/O, disk full, database).
    #[error("cache store {path}: {reason}")]
    Store {
        /// File or directory involved.
        path: PathBuf,
        /// The error.
        reason: String,
    },
    /// The index database failed.
    #[error("cache index: {0}")]
    Index(String),
    /// A fetch this read waited for was abandoned.
    #[error("fetch of chunk {0} was abandoned")]
    Abandoned(ChunkDigest),
}

impl CacheError {
    pub(crate) fn store(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Self::Store {
            path: path.into(),
            reason: err.to_string(),
        }
    }
}

//! Where chunk bytes come from. The cache knows nothing of HTTP: the daemon
//! hands it one [`ChunkSource`] per layer blob (a registry today; an HTTP
//! content-addressed store or a mirror list later).

use std::ops::Range;

use futures_util::future::BoxFuture;

/// Reads byte ranges of one layer blob.
pub trait ChunkSource: Send + Sync {
    /// Bytes `range` of the blob, exactly `range.end - range.start` of them.
    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Vec<u8>, SourceError>>;

    /// The blob's name for logs and errors (its digest).
    fn blob_name(&self) -> &str;
}

/// A failed read from a [`ChunkSource`]: the message names what failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SourceError(pub String);

//! Settings of a [`crate::ChunkCache`].

use std::path::PathBuf;
use std::time::Duration;

use crate::link::ReadAround;

/// How the cache behaves.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Cache directory (chunk files, index, layer metadata).
    pub dir: PathBuf,
    /// Hard limit on chunk bytes kept; least-recently-used chunks not being
    /// read and not pinned are evicted beyond it.
    pub quota_bytes: u64,
    /// Memory for the hot set of small chunks.
    pub hot_set_bytes: usize,
    /// Missing chunks whose stored bytes are at most this far apart are
    /// fetched in one range request...
    pub coalesce_gap: u64,
    /// ...as long as the request spans at most this many bytes.
    pub coalesce_max: u64,
    /// A range request that takes longer fails (the reader gets EIO).
    pub fetch_timeout: Duration,
    /// Range requests in flight at once, across all readers.
    pub max_concurrent_fetches: usize,
    /// How far a read that misses fetches the chunks after it in the blob
    /// (for callers of [`crate::ChunkCache::read_around`]).
    pub read_around: ReadAround,
}

impl CacheConfig {
    /// Defaults for a cache in `dir`: 10 GiB quota, 64 MiB hot set,
    /// coalescing up to 4 MiB with gaps up to 64 KiB, 30 s timeout, 16 fetches,
    /// no read-around.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            quota_bytes: 10 << 30,
            hot_set_bytes: 64 << 20,
            coalesce_gap: 64 << 10,
            coalesce_max: 4 << 20,
            fetch_timeout: Duration::from_secs(30),
            max_concurrent_fetches: 16,
            read_around: ReadAround::Off,
        }
    }
}

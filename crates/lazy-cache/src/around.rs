//! Reads that fetch around themselves: with a miss, the chunks that follow
//! it in the blob (its neighbours: the files next to it in its layer's tar
//! order, mostly its own directory's) come in the same range request, up to
//! about what the link carries in one more round trip. Programs read many
//! files of a directory; each neighbour fetched along saves a request later.

use std::sync::Arc;

use lazy_format::ChunkRecord;

use crate::cache::ChunkCache;
use crate::{CacheError, ChunkSource};

impl ChunkCache {
    /// How many stored bytes past a miss to fetch along now (the setting,
    /// with `Auto` from the link as measured so far).
    pub fn read_around_bytes(&self) -> u64 {
        self.inner
            .link
            .read_around_bytes(self.inner.config.read_around)
    }

    /// Those of `chunks` neither cached nor being fetched: what a read
    /// around can add without waiting on anyone else's fetch.
    pub fn absent(&self, chunks: &[ChunkRecord]) -> Vec<ChunkRecord> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        chunks
            .iter()
            .filter(|c| !ledger.contains(&c.digest) && !self.inner.flights.in_flight(&c.digest))
            .copied()
            .collect()
    }

    /// Reads like [`ChunkCache::read`], fetching `around` (chunks of the
    /// same blob, see [`ChunkCache::absent`]) in the same requests. A
    /// failure among `around` does not fail the read: it is read again
    /// without them.
    pub async fn read_around(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
        skip: u64,
        len: usize,
        around: &[ChunkRecord],
    ) -> Result<Vec<u8>, CacheError> {
        if !around.is_empty() {
            let mut all = chunks.to_vec();
            all.extend_from_slice(around);
            match self.ensure(source, &all).await {
                Ok(guard) => return self.copy_from(guard, chunks, skip, len).await,
                Err(e) => tracing::debug!("reading around failed ({e}); reading without"),
            }
        }
        self.read(source, chunks, skip, len).await
    }
}

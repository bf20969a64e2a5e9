//! The in-memory hot set: recently read small chunks, bounded in bytes.

use std::sync::Arc;

use lazy_format::ChunkDigest;
use lru::LruCache;

/// Chunks up to this size are kept in memory when fetched or read.
pub(crate) const HOT_CHUNK_MAX: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) struct HotSet {
    chunks: LruCache<ChunkDigest, Arc<Vec<u8>>>,
    bytes: usize,
    budget: usize,
}

impl HotSet {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            chunks: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    pub(crate) fn get(&mut self, digest: &ChunkDigest) -> Option<Arc<Vec<u8>>> {
        self.chunks.get(digest).cloned()
    }

    pub(crate) fn put(&mut self, digest: ChunkDigest, data: Arc<Vec<u8>>) {
        if data.len() > HOT_CHUNK_MAX || data.len() > self.budget {
            return;
        }
        self.bytes += data.len();
        if let Some(old) = self.chunks.put(digest, data) {
            self.bytes -= old.len();
        }
        while self.bytes > self.budget {
            match self.chunks.pop_lru() {
                Some((_, evicted)) => self.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    pub(crate) fn remove(&mut self, digest: &ChunkDigest) {
        if let Some(old) = self.chunks.pop(digest) {
            self.bytes -= old.len();
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_budget() {
        let mut hot = HotSet::new(100);
        for n in 0..5u8 {
            hot.put(ChunkDigest([n; 32]), Arc::new(vec![n; 40]));
        }
        assert!(hot.bytes() <= 100);
        assert!(hot.get(&ChunkDigest([4; 32])).is_some());
        assert!(hot.get(&ChunkDigest([0; 32])).is_none());
    }
}

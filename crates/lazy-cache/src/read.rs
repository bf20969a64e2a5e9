//! Reads through the cache: a read holds its chunks (cached ones against
//! eviction, fetched ones in memory) in a [`ReadGuard`] while it copies
//! their bytes out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lazy_format::{ChunkDigest, ChunkRecord};

use crate::ahead::Need;
use crate::cache::{ChunkCache, Inner};
use crate::{CacheError, ChunkSource};

/// The chunks of one read: read references on cached chunks, held while
/// their bytes are copied out so that eviction cannot take them away
/// (released on drop), and the bytes of chunks this read fetched or joined,
/// verified and in memory, whether or not they are stored yet.
pub struct ReadGuard {
    inner: Arc<Inner>,
    pub(crate) held: Vec<ChunkDigest>,
    pub(crate) fetched: HashMap<ChunkDigest, Arc<Vec<u8>>>,
}

impl ReadGuard {
    pub(crate) fn new(inner: &Arc<Inner>) -> Self {
        Self {
            inner: Arc::clone(inner),
            held: Vec::new(),
            fetched: HashMap::new(),
        }
    }

    /// Keeps the verified bytes of a chunk this read fetched or joined, with
    /// a read reference on it (it may not be stored yet).
    pub(crate) fn keep(&mut self, digest: ChunkDigest, data: Arc<Vec<u8>>) {
        if self.fetched.insert(digest, data).is_none() {
            self.inner
                .ledger
                .lock()
                .expect("ledger lock")
                .expect_reader(digest);
            self.held.push(digest);
        }
    }

    /// Whether every chunk of `chunks` is in memory (no disk read needed).
    fn all_in_memory(&self, chunks: &[ChunkRecord]) -> bool {
        let mut hot = self.inner.hot.lock().expect("hot set lock");
        chunks
            .iter()
            .all(|c| self.fetched.contains_key(&c.digest) || hot.get(&c.digest).is_some())
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut ledger = self.inner.ledger.lock().expect("ledger lock");
        for d in &self.held {
            ledger.release(*d);
        }
        drop(ledger);
        self.inner.enforce_quota_soon();
    }
}

impl ChunkCache {
    /// Reads `len` bytes starting `skip` bytes into the first of `chunks`
    /// (consecutive chunks of one file), fetching missing ones from `source`.
    /// Chunk files are read on a blocking thread.
    pub async fn read(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
        skip: u64,
        len: usize,
    ) -> Result<Vec<u8>, CacheError> {
        let guard = self.ensure(source, chunks).await?;
        self.copy_from(guard, chunks, skip, len).await
    }

    /// Copies a read's bytes out of `guard`'s chunks: from memory on this
    /// worker, from chunk files on a blocking thread.
    pub(crate) async fn copy_from(
        &self,
        guard: ReadGuard,
        chunks: &[ChunkRecord],
        skip: u64,
        len: usize,
    ) -> Result<Vec<u8>, CacheError> {
        if guard.all_in_memory(chunks) {
            return self.inner.copy_all(&guard, chunks, skip, len);
        }
        let (inner, chunks) = (Arc::clone(&self.inner), chunks.to_vec());
        tokio::task::spawn_blocking(move || inner.copy_all(&guard, &chunks, skip, len))
            .await
            .expect("chunk copy panicked")
    }

    /// Reads like [`ChunkCache::read`] when every chunk is cached, on the
    /// calling thread: blocking (chunk files are read), so for a thread of
    /// its own such as a FUSE session thread, never an async worker.
    /// `None` when a chunk is not cached: then [`ChunkCache::read`] fetches.
    pub fn read_cached(
        &self,
        chunks: &[ChunkRecord],
        skip: u64,
        len: usize,
    ) -> Option<Result<Vec<u8>, CacheError>> {
        let mut guard = ReadGuard::new(&self.inner);
        {
            let mut ledger = self.inner.ledger.lock().expect("ledger lock");
            for record in chunks {
                if !ledger.acquire(record.digest) {
                    return None;
                }
                guard.held.push(record.digest);
            }
        }
        let hits = u64::try_from(chunks.len()).unwrap_or(u64::MAX);
        self.inner.metrics.hits.inc_by(hits);
        self.inner
            .agreements
            .note_read(chunks.iter().map(|c| c.digest));
        Some(self.inner.copy_all(&guard, chunks, skip, len))
    }

    /// Makes sure every chunk of `chunks` is cached or in the returned
    /// guard's memory, fetching the missing ones; cached ones are kept until
    /// the guard drops. Fetched chunks are stored in the background.
    pub async fn ensure(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
    ) -> Result<ReadGuard, CacheError> {
        self.ensure_for(source, chunks, Need::Demand).await
    }

    /// [`ChunkCache::ensure`] for a reader or a guess.
    pub(crate) async fn ensure_for(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
        need: Need,
    ) -> Result<ReadGuard, CacheError> {
        if need == Need::Demand {
            let digests = chunks.iter().map(|c| c.digest);
            self.inner.agreements.note_read(digests);
        }
        let mut guard = ReadGuard::new(&self.inner);
        let mut wanted: Vec<ChunkRecord> = Vec::new();
        let mut seen = HashSet::new();
        {
            let mut ledger = self.inner.ledger.lock().expect("ledger lock");
            for record in chunks {
                if !seen.insert(record.digest) {
                    continue;
                }
                if ledger.acquire(record.digest) {
                    guard.held.push(record.digest);
                    self.inner.metrics.hits.inc();
                } else {
                    self.inner.metrics.misses.inc();
                    wanted.push(*record);
                }
            }
        }
        // Two rounds: a chunk another reader fetched may be gone again
        // (not stored, or evicted) by the time we look; then fetch it ourselves.
        for _ in 0..2 {
            if wanted.is_empty() {
                break;
            }
            wanted = self
                .inner
                .fetch_or_wait(source, wanted, &mut guard, need)
                .await?;
        }
        match wanted.first() {
            None => Ok(guard),
            Some(r) => Err(CacheError::Abandoned(r.digest)),
        }
    }
}

impl Inner {
    /// Copies `len` bytes from `skip` into the first of `chunks` out of
    /// memory or the chunk files (blocking when a file is read).
    pub(crate) fn copy_all(
        &self,
        guard: &ReadGuard,
        chunks: &[ChunkRecord],
        skip: u64,
        len: usize,
    ) -> Result<Vec<u8>, CacheError> {
        let mut out = Vec::with_capacity(len);
        let mut from = skip;
        for record in chunks {
            if out.len() >= len {
                break;
            }
            let take = (u64::from(record.size).saturating_sub(from)).min((len - out.len()) as u64);
            let take = usize::try_from(take).expect("chunk fits memory");
            self.copy_out(guard, record, from, take, &mut out)?;
            from = 0;
        }
        Ok(out)
    }

    fn copy_out(
        &self,
        guard: &ReadGuard,
        record: &ChunkRecord,
        from: u64,
        take: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CacheError> {
        let data = guard
            .fetched
            .get(&record.digest)
            .cloned()
            .or_else(|| self.hot.lock().expect("hot set lock").get(&record.digest));
        let start = usize::try_from(from).expect("offset within chunk");
        if let Some(data) = data {
            out.extend_from_slice(&data[start..start + take]);
            return Ok(());
        }
        let at = out.len();
        out.resize(at + take, 0);
        self.store.read_at(&record.digest, from, &mut out[at..])
    }
}

//! The chunk cache: reads chunks through the store, fetching what is
//! missing (coalesced, single-flight, verified) from the layer's source.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use lazy_format::{ChunkDigest, ChunkRecord};
use tokio::sync::Semaphore;

use crate::ahead::{Agreements, DemandGauge, Need};
use crate::assemble::AssemblyQueue;
use crate::fetch::Admissions;
use crate::flight::Flights;
use crate::hot::HotSet;
use crate::index::{ChunkIndex, IndexEntry};
use crate::ledger::{Ledger, now_ms};
use crate::link::LinkEstimate;
use crate::store::ChunkStore;
use crate::{CacheConfig, CacheError, CacheMetrics, ChunkSource};

/// The host-shared chunk cache. Cheap to clone.
#[derive(Clone)]
pub struct ChunkCache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: CacheConfig,
    pub(crate) store: ChunkStore,
    pub(crate) index: ChunkIndex,
    pub(crate) ledger: Mutex<Ledger>,
    pub(crate) flights: Flights,
    pub(crate) hot: Mutex<HotSet>,
    pub(crate) fetch_slots: Semaphore,
    /// Slots for fetching ahead of readers (a share of `fetch_slots`).
    pub(crate) ahead_slots: Semaphore,
    /// Fetches readers wait on, which guesses make way for.
    pub(crate) demand: DemandGauge,
    /// Guesses whose agreement with readers is counted.
    pub(crate) agreements: Agreements,
    pub(crate) metrics: CacheMetrics,
    pub(crate) assembly: AssemblyQueue,
    /// Shared with the background work, which signals through it only
    /// once it has let go of the cache (so a settled cache can be reopened).
    pub(crate) admissions: Arc<Admissions>,
    /// The link to the sources as measured, for reading around misses.
    pub(crate) link: LinkEstimate,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

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
    /// Opens the cache in `config.dir`, reconciling chunk files and index.
    pub fn open(config: CacheConfig, metrics: CacheMetrics) -> Result<Self, CacheError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| CacheError::store(&config.dir, e))?;
        let store = ChunkStore::open(&config.dir)?;
        let index = ChunkIndex::open(&config.dir)?;
        let ledger = crate::reconcile::reconcile(&store, &index)?;
        let inner = Inner {
            hot: Mutex::new(HotSet::new(config.hot_set_bytes)),
            fetch_slots: Semaphore::new(config.max_concurrent_fetches.max(1)),
            demand: DemandGauge::default(),
            agreements: Agreements::default(),
            ahead_slots: Semaphore::new(
                (config.max_concurrent_fetches / crate::ahead::AHEAD_SHARE).max(1),
            ),
            flights: Flights::default(),
            ledger: Mutex::new(ledger),
            store,
            index,
            metrics,
            config,
            assembly: AssemblyQueue::default(),
            admissions: Arc::default(),
            link: LinkEstimate::default(),
        };
        let cache = Self {
            inner: Arc::new(inner),
        };
        cache.inner.enforce_quota();
        cache.inner.update_gauges();
        Ok(cache)
    }

    /// The configuration in force.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

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
        Some(self.inner.copy_all(&guard, chunks, skip, len))
    }

    /// Writes the time of last use of the chunks read since the last call
    /// into the index, in one batch, so that a restarted cache evicts in
    /// LRU order. Blocking; the daemon calls it every few seconds and at
    /// shutdown.
    pub fn persist_use_times(&self) -> Result<usize, CacheError> {
        let used = self.inner.ledger.lock().expect("ledger lock").take_used();
        let entries: Vec<(ChunkDigest, IndexEntry)> = used
            .into_iter()
            .map(|(digest, size, used_ms)| {
                let entry = IndexEntry {
                    size,
                    last_access_ms: used_ms,
                };
                (digest, entry)
            })
            .collect();
        self.inner.index.put_all(&entries)?;
        Ok(entries.len())
    }

    /// Waits until every chunk fetched so far is stored (file, index,
    /// ledger): storing happens after the readers have their bytes.
    pub async fn settled(&self) {
        self.inner.admissions.settled().await;
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

    /// Whether a chunk is cached.
    pub fn contains(&self, digest: &ChunkDigest) -> bool {
        self.inner
            .ledger
            .lock()
            .expect("ledger lock")
            .contains(digest)
    }

    /// Starts reading the cached ones of `chunks` from disk in the
    /// background, for a sequential reader about to reach them: chunk files
    /// lie apart on disk, so the kernel's read-ahead stops at each chunk's
    /// end and the reader would wait for the disk once per chunk. Call it
    /// from within the tokio runtime (the hint runs on a blocking thread).
    pub fn will_need(&self, chunks: &[ChunkRecord]) {
        let cached: Vec<ChunkDigest> = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            chunks
                .iter()
                .map(|c| c.digest)
                .filter(|d| ledger.contains(d))
                .collect()
        };
        if cached.is_empty() {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            for digest in &cached {
                inner.store.will_need(digest);
            }
        });
    }

    /// Path of a cached chunk's file (for FUSE passthrough).
    pub fn chunk_path(&self, digest: &ChunkDigest) -> std::path::PathBuf {
        self.inner.store.path(digest)
    }

    /// Protects chunks from eviction until unpinned.
    pub fn pin(&self, digests: impl IntoIterator<Item = ChunkDigest>) {
        self.inner.ledger.lock().expect("ledger lock").pin(digests);
    }

    /// Undoes [`ChunkCache::pin`].
    pub fn unpin(&self, digests: impl IntoIterator<Item = ChunkDigest>) {
        self.inner
            .ledger
            .lock()
            .expect("ledger lock")
            .unpin(digests);
        self.inner.enforce_quota();
    }

    /// Bytes held (chunks and whole-file copies: what the quota bounds)
    /// and chunks held.
    pub fn usage(&self) -> (u64, usize) {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        (ledger.total(), ledger.count())
    }

    /// Whole-file copies held (see [`ChunkCache::assembled`]) and their bytes.
    pub fn copies(&self) -> (usize, u64) {
        self.inner.ledger.lock().expect("ledger lock").copies()
    }

    /// Evicts unused, unpinned chunks down to `target` bytes; returns how
    /// many chunks and bytes were removed.
    pub fn gc(&self, target: u64) -> (usize, u64) {
        self.inner.evict_to(target)
    }

    /// Re-hashes every cached chunk; corrupt or missing ones are removed.
    /// Returns (checked, removed digests).
    pub fn verify(&self) -> (usize, Vec<ChunkDigest>) {
        let digests = self.inner.ledger.lock().expect("ledger lock").digests();
        let mut bad = Vec::new();
        for d in &digests {
            let ok = self.inner.store.hash(d).is_ok_and(|h| h == *d);
            if !ok {
                bad.push(*d);
            }
        }
        for d in &bad {
            self.inner.ledger.lock().expect("ledger lock").forget(*d);
            self.inner.hot.lock().expect("hot set lock").remove(d);
            let _ = self.inner.store.remove(d);
        }
        if let Err(e) = self.inner.index.delete_all(&bad) {
            tracing::warn!("removing corrupt chunks from the index: {e}");
        }
        self.inner.update_gauges();
        (digests.len(), bad)
    }
}

impl Inner {
    /// Stores a verified chunk: file, then index, then ledger. Blocking.
    pub(crate) fn admit(&self, digest: ChunkDigest, data: &[u8]) -> Result<(), CacheError> {
        self.store.write(&digest, data)?;
        let size = data.len() as u64;
        if let Err(e) = self.index.put(
            &digest,
            IndexEntry {
                size,
                last_access_ms: now_ms(),
            },
        ) {
            let _ = self.store.remove(&digest);
            return Err(e);
        }
        self.ledger
            .lock()
            .expect("ledger lock")
            .insert(digest, size, false);
        self.update_gauges();
        Ok(())
    }

    /// Copies `len` bytes from `skip` into the first of `chunks` out of
    /// memory or the chunk files (blocking when a file is read).
    fn copy_all(
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

    pub(crate) fn enforce_quota(&self) {
        let quota = self.config.quota_bytes;
        self.evict_to(quota);
    }

    /// [`Inner::enforce_quota`] when over quota: on a blocking thread
    /// when called from the async runtime (eviction deletes files).
    fn enforce_quota_soon(self: &Arc<Self>) {
        let over = self.ledger.lock().expect("ledger lock").total() > self.config.quota_bytes;
        if !over {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (inner, admissions) = (Arc::clone(self), Arc::clone(&self.admissions));
                admissions.add(1);
                runtime.spawn_blocking(move || {
                    inner.enforce_quota();
                    drop(inner);
                    admissions.done(1);
                });
            }
            Err(_) => self.enforce_quota(),
        }
    }

    fn evict_to(&self, target: u64) -> (usize, u64) {
        let victims = self.ledger.lock().expect("ledger lock").evict_to(target);
        if victims.is_empty() {
            return (0, 0);
        }
        let digests: Vec<ChunkDigest> = victims.iter().map(|(d, _)| *d).collect();
        if let Err(e) = self.index.delete_all(&digests) {
            tracing::warn!("evicting from the index: {e}");
        }
        for d in &digests {
            self.hot.lock().expect("hot set lock").remove(d);
            if let Err(e) = self.store.remove(d) {
                tracing::warn!("evicting {d}: {e}");
            }
        }
        self.metrics.evictions.inc_by(digests.len() as u64);
        self.update_gauges();
        (digests.len(), victims.iter().map(|(_, s)| s).sum())
    }

    pub(crate) fn update_gauges(&self) {
        let (total, count) = {
            let ledger = self.ledger.lock().expect("ledger lock");
            (ledger.total(), ledger.count())
        };
        self.metrics
            .cache_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        self.metrics
            .cache_chunks
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

//! The chunk cache: reads chunks through the store, fetching what is
//! missing (coalesced, single-flight, verified) from the layer's source.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use lazy_format::{ChunkDigest, ChunkRecord};
use tokio::sync::Semaphore;

use crate::assemble::AssemblyQueue;
use crate::flight::Flights;
use crate::hot::HotSet;
use crate::index::{ChunkIndex, IndexEntry};
use crate::ledger::Ledger;
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
    pub(crate) metrics: CacheMetrics,
    pub(crate) assembly: AssemblyQueue,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

/// Read references on chunks, held while their bytes are copied out so that
/// eviction cannot take them away; released on drop.
pub struct ReadGuard {
    inner: Arc<Inner>,
    pub(crate) held: Vec<ChunkDigest>,
    /// Verified chunks that could not be stored (disk full): served anyway.
    pub(crate) unstored: HashMap<ChunkDigest, Arc<Vec<u8>>>,
}

impl ReadGuard {
    pub(crate) fn new(inner: &Arc<Inner>) -> Self {
        Self {
            inner: Arc::clone(inner),
            held: Vec::new(),
            unstored: HashMap::new(),
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut ledger = self.inner.ledger.lock().expect("ledger lock");
        for d in &self.held {
            ledger.release(*d);
        }
        drop(ledger);
        self.inner.enforce_quota();
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
            flights: Flights::default(),
            ledger: Mutex::new(ledger),
            store,
            index,
            metrics,
            config,
            assembly: AssemblyQueue::default(),
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
    pub async fn read(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
        skip: u64,
        len: usize,
    ) -> Result<Vec<u8>, CacheError> {
        let guard = self.ensure(source, chunks).await?;
        let mut out = Vec::with_capacity(len);
        let mut from = skip;
        for record in chunks {
            if out.len() >= len {
                break;
            }
            let take = (u64::from(record.size).saturating_sub(from)).min((len - out.len()) as u64);
            let take = usize::try_from(take).expect("chunk fits memory");
            self.inner.copy_out(&guard, record, from, take, &mut out)?;
            from = 0;
        }
        Ok(out)
    }

    /// Makes sure every chunk of `chunks` is cached (or held in the returned
    /// guard), fetching the missing ones, and keeps them until the guard drops.
    pub async fn ensure(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
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
            wanted = self.inner.fetch_or_wait(source, wanted, &mut guard).await?;
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
    /// Stores a verified chunk: file, then index, then ledger (held for the caller).
    pub(crate) fn admit(&self, digest: ChunkDigest, data: &[u8]) -> Result<(), CacheError> {
        self.store.write(&digest, data)?;
        let size = data.len() as u64;
        if let Err(e) = self.index.put(
            &digest,
            IndexEntry {
                size,
                last_access: now_secs(),
            },
        ) {
            let _ = self.store.remove(&digest);
            return Err(e);
        }
        self.ledger
            .lock()
            .expect("ledger lock")
            .insert(digest, size, true);
        self.update_gauges();
        Ok(())
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
            .unstored
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

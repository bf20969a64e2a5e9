//! The chunk cache: reads chunks through the store, fetching what is
//! missing (coalesced, single-flight, verified) from the layer's source.

use std::sync::{Arc, Mutex};

use lazy_format::{ChunkDigest, ChunkRecord};
use tokio::sync::Semaphore;

use crate::ahead::{Agreements, DemandGauge};
use crate::assemble::AssemblyQueue;
use crate::fetch::Admissions;
use crate::flight::Flights;
use crate::hot::HotSet;
use crate::index::{ChunkIndex, IndexEntry};
use crate::ledger::{Ledger, now_ms};
use crate::link::LinkEstimate;
use crate::store::ChunkStore;
use crate::{CacheConfig, CacheError, CacheMetrics};

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

    pub(crate) fn enforce_quota(&self) {
        let quota = self.config.quota_bytes;
        self.evict_to(quota);
    }

    /// [`Inner::enforce_quota`] when over quota: on a blocking thread
    /// when called from the async runtime (eviction deletes files).
    pub(crate) fn enforce_quota_soon(self: &Arc<Self>) {
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

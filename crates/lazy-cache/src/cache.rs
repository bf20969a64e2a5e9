//! The chunk cache: reads chunks through the store, fetching what is
//! missing (coalesced, single-flight, verified) from the layer's source.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use lazy_format::{ChunkDigest, ChunkRecord, decode_chunk};
use tokio::sync::Semaphore;

use crate::flight::{Claim, FlightGuard, Flights, wait};
use crate::hot::HotSet;
use crate::index::{ChunkIndex, IndexEntry};
use crate::ledger::Ledger;
use crate::plan::{coalesce, span};
use crate::store::ChunkStore;
use crate::{CacheConfig, CacheError, CacheMetrics, ChunkSource};

/// The host-shared chunk cache. Cheap to clone.
#[derive(Clone)]
pub struct ChunkCache {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: CacheConfig,
    pub(crate) store: ChunkStore,
    pub(crate) index: ChunkIndex,
    pub(crate) ledger: Mutex<Ledger>,
    flights: Flights,
    hot: Mutex<HotSet>,
    fetch_slots: Semaphore,
    pub(crate) metrics: CacheMetrics,
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
    held: Vec<ChunkDigest>,
    /// Verified chunks that could not be stored (disk full): served anyway.
    unstored: HashMap<ChunkDigest, Arc<Vec<u8>>>,
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
        let mut guard = ReadGuard {
            inner: Arc::clone(&self.inner),
            held: Vec::new(),
            unstored: HashMap::new(),
        };
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

    /// Bytes and chunks held.
    pub fn usage(&self) -> (u64, usize) {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        (ledger.total(), ledger.count())
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
            let ok = self
                .inner
                .store
                .read(d)
                .is_ok_and(|data| ChunkDigest::of(&data) == *d);
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
    /// Claims what nobody fetches yet, fetches it (coalesced), waits for
    /// the rest; returns chunks that still need a fetch.
    async fn fetch_or_wait(
        &self,
        source: &Arc<dyn ChunkSource>,
        wanted: Vec<ChunkRecord>,
        guard: &mut ReadGuard,
    ) -> Result<Vec<ChunkRecord>, CacheError> {
        let mut mine: Vec<(ChunkRecord, FlightGuard)> = Vec::new();
        let mut theirs = Vec::new();
        for record in wanted {
            match self.flights.claim(record.digest) {
                Claim::Mine(flight) => mine.push((record, flight)),
                Claim::Theirs(rx) => theirs.push((record, rx)),
            }
        }
        mine.sort_by_key(|(r, _)| r.offset);
        let records: Vec<ChunkRecord> = mine.iter().map(|(r, _)| *r).collect();
        let runs = coalesce(&records, self.config.coalesce_gap, self.config.coalesce_max);
        let mut flights: Vec<Option<FlightGuard>> =
            mine.into_iter().map(|(_, f)| Some(f)).collect();
        let mut jobs = Vec::new();
        for run in runs {
            let run_flights: Vec<FlightGuard> = flights[run.clone()]
                .iter_mut()
                .map(|f| f.take().expect("flight"))
                .collect();
            jobs.push(self.fetch_run(source, &records[run], run_flights));
        }
        let mut first_error = None;
        for result in join_all(jobs).await {
            match result {
                Ok(fetched) => {
                    for (digest, data, stored) in fetched {
                        if stored {
                            guard.held.push(digest);
                        } else {
                            guard.unstored.insert(digest, data);
                        }
                    }
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        let mut again = Vec::new();
        for (record, rx) in theirs {
            match wait(rx, record.digest).await {
                Ok(())
                    if self
                        .ledger
                        .lock()
                        .expect("ledger lock")
                        .acquire(record.digest) =>
                {
                    guard.held.push(record.digest);
                }
                Ok(()) | Err(CacheError::Abandoned(_)) => again.push(record),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(again),
        }
    }

    /// Fetches one coalesced run, verifies and stores each chunk, and
    /// reports to the waiters. Returns (digest, data, stored-and-held).
    async fn fetch_run(
        &self,
        source: &Arc<dyn ChunkSource>,
        run: &[ChunkRecord],
        flights: Vec<FlightGuard>,
    ) -> Result<Vec<(ChunkDigest, Arc<Vec<u8>>, bool)>, CacheError> {
        let range = span(run);
        let bytes = match self.fetch_range(source, range.clone()).await {
            Ok(bytes) => bytes,
            Err(e) => {
                for f in flights {
                    f.complete(Err(e.clone()));
                }
                return Err(e);
            }
        };
        let mut out = Vec::with_capacity(run.len());
        let mut failure = None;
        for (record, flight) in run.iter().zip(flights) {
            debug_assert_eq!(record.digest, flight.digest());
            let start = usize::try_from(record.offset - range.start).expect("run fits memory");
            let stored = &bytes[start..start + record.stored_len as usize];
            let data = match decode_chunk(record, stored) {
                Ok(data) => Arc::new(data),
                Err(e) => {
                    self.metrics.verification_failures.inc();
                    let err = CacheError::Verification {
                        digest: record.digest,
                        blob: source.blob_name().to_owned(),
                        reason: e.to_string(),
                    };
                    flight.complete(Err(err.clone()));
                    failure = failure.or(Some(err));
                    continue;
                }
            };
            self.metrics.chunks_fetched.inc();
            self.hot
                .lock()
                .expect("hot set lock")
                .put(record.digest, Arc::clone(&data));
            let stored_ok = match self.admit(record.digest, &data) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("serving chunk {} without caching it: {e}", record.digest);
                    false
                }
            };
            flight.complete(Ok(()));
            out.push((record.digest, data, stored_ok));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    async fn fetch_range(
        &self,
        source: &Arc<dyn ChunkSource>,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, CacheError> {
        let _slot = self
            .fetch_slots
            .acquire()
            .await
            .expect("fetch semaphore never closed");
        let started = Instant::now();
        self.metrics.requests.inc();
        let blob = source.blob_name().to_owned();
        let result =
            tokio::time::timeout(self.config.fetch_timeout, source.read_range(range.clone())).await;
        self.metrics
            .fetch_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(CacheError::Timeout {
                blob,
                start: range.start,
                end: range.end,
                seconds: self.config.fetch_timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(CacheError::Fetch {
                blob,
                start: range.start,
                end: range.end,
                reason: e.0,
            }),
            Ok(Ok(bytes)) if bytes.len() as u64 != range.end - range.start => {
                Err(CacheError::Fetch {
                    blob,
                    start: range.start,
                    end: range.end,
                    reason: format!("source returned {} bytes", bytes.len()),
                })
            }
            Ok(Ok(bytes)) => {
                self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
                Ok(bytes)
            }
        }
    }

    /// Stores a verified chunk: file, then index, then ledger (held for the caller).
    fn admit(&self, digest: ChunkDigest, data: &[u8]) -> Result<(), CacheError> {
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

    fn update_gauges(&self) {
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

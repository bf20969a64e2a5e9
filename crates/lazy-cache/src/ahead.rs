//! Fetching ahead of readers, behind them: guesses of what a process reads
//! next (a record, a file's other chunks, its neighbours) take at most a
//! few of the fetch slots, and take a slot before they claim any chunk, so
//! a reader asking for one of those chunks meanwhile fetches it at once
//! instead of queueing behind the guesses. Guesses that may be unrelated
//! to what runs (the whole image) also wait until no reader has waited on
//! a fetch of its own for a while, so that they use the link when readers
//! do not. Whether a record is right shows as it goes: an [`Agreement`]
//! counts the chunks readers had to fetch themselves inside and outside it
//! (a reader joining a guessed chunk's fetch does not count, so a right
//! record is not held back). Once readers disagree with a record, the rest
//! of it is dropped: on a link that bytes fill, fetching it even while
//! readers pause delays their next miss. And a record runs ahead of readers
//! only as far as they follow it: [`HEAD_START`] bytes before any read,
//! plus twice what readers have read of it, less twice what they had to
//! fetch outside it, so that a record of another command costs little
//! before readers disagree, and a right one stays ahead of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use lazy_format::{ChunkDigest, ChunkRecord};

use crate::cache::ChunkCache;
use crate::{CacheError, ChunkSource};

/// The share of the fetch slots that fetching ahead may hold (1 in N).
pub(crate) const AHEAD_SHARE: usize = 4;

/// Who a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A reader waits on it.
    Demand,
    /// A guess.
    Ahead,
}

/// How long readers must not have waited on a fetch of their own before
/// unrelated guesses go: a process starting cold misses every few tens of
/// milliseconds, so a short pause in its misses does not count.
const QUIET: Duration = Duration::from_millis(100);

/// Counts the fetches readers wait on, and when the last one ended.
#[derive(Debug)]
pub(crate) struct DemandGauge(watch::Sender<(usize, Instant)>);

impl Default for DemandGauge {
    fn default() -> Self {
        Self(watch::Sender::new((0, Instant::now())))
    }
}

impl DemandGauge {
    /// Counts one fetch until the guard drops.
    pub(crate) fn busy(&self) -> DemandGuard<'_> {
        self.0.send_modify(|(n, _)| *n += 1);
        DemandGuard(self)
    }

    /// Waits until no reader has waited on a fetch for [`QUIET`].
    async fn quiet(&self) {
        let mut rx = self.0.subscribe();
        loop {
            // The sender lives in `self`: the channel cannot close meanwhile.
            let since = match rx.wait_for(|(n, _)| *n == 0).await {
                Ok(state) => state.1.elapsed(),
                Err(_) => return,
            };
            if since >= QUIET {
                return;
            }
            tokio::time::sleep(QUIET - since).await;
        }
    }
}

/// One fetch a reader waits on (see [`DemandGauge::busy`]).
pub(crate) struct DemandGuard<'a>(&'a DemandGauge);

impl Drop for DemandGuard<'_> {
    fn drop(&mut self) {
        self.0
            .0
            .send_modify(|(n, ended)| (*n, *ended) = (n.saturating_sub(1), Instant::now()));
    }
}

/// Readers' fetches beyond those inside a guess before it counts as wrong:
/// a right record misses a few (its last chunks, files named per run).
const WRONG_AFTER: usize = 8;

/// Stored bytes of a guess fetched before readers read any of it.
pub const HEAD_START: u64 = 1 << 20;

/// How long a guess waits for readers to follow it before it goes on
/// when they are quiet: a process may compute for a while between reads.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// How readers agree with a guess (a set of chunks): how many chunks they
/// had to fetch themselves that the guess holds, and that it does not, and
/// how many bytes of it they read.
#[derive(Debug)]
pub struct Agreement {
    /// Each guessed chunk's stored size, and whether a reader read it.
    guessed: HashMap<ChunkDigest, (u64, AtomicBool)>,
    inside: AtomicUsize,
    outside: AtomicUsize,
    wrong: AtomicBool,
    /// Stored bytes of the guessed chunks readers read.
    followed: AtomicU64,
    /// Stored bytes readers had to fetch themselves outside the guess.
    missed: AtomicU64,
    progress: Notify,
}

impl Agreement {
    /// Whether readers fetch mostly what the guess holds (or have hardly
    /// fetched anything yet). Once wrong, wrong for good.
    pub fn right(&self) -> bool {
        if self.wrong.load(Ordering::Relaxed) {
            return false;
        }
        let (inside, outside) = self.counts();
        let right = outside <= inside + WRONG_AFTER;
        if !right {
            self.wrong.store(true, Ordering::Relaxed);
        }
        right
    }

    /// Chunks readers fetched themselves: inside the guess, outside it.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.inside.load(Ordering::Relaxed),
            self.outside.load(Ordering::Relaxed),
        )
    }

    /// Stored bytes of the guess readers have read.
    pub fn followed(&self) -> u64 {
        self.followed.load(Ordering::Relaxed)
    }

    /// Stored bytes readers had to fetch themselves outside the guess.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Counts a reader's read of `digest`.
    fn follow(&self, digest: &ChunkDigest) {
        if let Some((size, read)) = self.guessed.get(digest)
            && !read.swap(true, Ordering::Relaxed)
        {
            self.followed.fetch_add(*size, Ordering::Relaxed);
            self.progress.notify_waiters();
        }
    }

    /// Waits until the part of the guess starting `at` stored bytes into it
    /// may go: readers follow the guess far enough (see the module doc), or
    /// have not followed it further for [`FOLLOW_WAIT`]. Returns whether
    /// they follow.
    async fn reached(&self, at: u64) -> bool {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let reach = (HEAD_START + 2 * self.followed()).saturating_sub(2 * self.missed());
            if at < reach {
                return true;
            }
            if tokio::time::timeout(FOLLOW_WAIT, progress).await.is_err() {
                return false;
            }
        }
    }
}

/// The agreements being watched.
#[derive(Debug, Default)]
pub(crate) struct Agreements {
    list: Mutex<Vec<Weak<Agreement>>>,
    /// Whether the list may hold a live one: spares cached reads the lock.
    any: AtomicBool,
}

impl Agreements {
    /// Counts readers' own fetches of `chunks` in every live agreement.
    pub(crate) fn note(&self, chunks: impl Iterator<Item = ChunkRecord> + Clone) {
        for agreement in self.live() {
            for chunk in chunks.clone() {
                if agreement.guessed.contains_key(&chunk.digest) {
                    agreement.inside.fetch_add(1, Ordering::Relaxed);
                } else {
                    agreement.outside.fetch_add(1, Ordering::Relaxed);
                    let size = u64::from(chunk.stored_len);
                    agreement.missed.fetch_add(size, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counts readers' reads of `digests` (cached, joined or fetched).
    pub(crate) fn note_read(&self, digests: impl Iterator<Item = ChunkDigest> + Clone) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        for agreement in self.live() {
            digests.clone().for_each(|d| agreement.follow(&d));
        }
    }

    fn live(&self) -> Vec<Arc<Agreement>> {
        let mut list = self.list.lock().expect("agreements lock");
        list.retain(|a| a.strong_count() > 0);
        self.any.store(!list.is_empty(), Ordering::Relaxed);
        list.iter().filter_map(Weak::upgrade).collect()
    }

    fn watch(&self, agreement: &Arc<Agreement>) {
        let mut list = self.list.lock().expect("agreements lock");
        list.push(Arc::downgrade(agreement));
        self.any.store(true, Ordering::Relaxed);
    }
}

impl ChunkCache {
    /// Starts counting how readers agree with a guess of `chunks`, for as
    /// long as the returned agreement lives.
    pub fn watch_guess<'a>(
        &self,
        chunks: impl IntoIterator<Item = &'a ChunkRecord>,
    ) -> Arc<Agreement> {
        let guessed = chunks
            .into_iter()
            .map(|c| (c.digest, (u64::from(c.stored_len), AtomicBool::new(false))))
            .collect();
        let agreement = Arc::new(Agreement {
            guessed,
            inside: AtomicUsize::new(0),
            outside: AtomicUsize::new(0),
            wrong: AtomicBool::new(false),
            followed: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            progress: Notify::new(),
        });
        self.inner.agreements.watch(&agreement);
        agreement
    }

    /// Counts a read of `chunks` that did not reach this cache (a
    /// passthrough open of their file) as readers following any guess.
    pub fn note_read(&self, chunks: &[ChunkRecord]) {
        self.inner
            .agreements
            .note_read(chunks.iter().map(|c| c.digest));
    }

    /// Fetches those of `chunks` (one blob's) that are neither cached nor
    /// being fetched, as background work (see the module doc). Returns how
    /// many it fetched.
    pub async fn fetch_ahead(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
    ) -> Result<usize, CacheError> {
        let _slot = self.ahead_slot().await;
        self.fetch_absent(source, chunks).await
    }

    /// One of the fetch slots guesses may hold.
    async fn ahead_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .ahead_slots
            .acquire()
            .await
            .expect("fetch-ahead semaphore never closed")
    }

    /// Fetches those of `chunks` neither cached nor being fetched, as a
    /// guess; the caller holds a fetch-ahead slot.
    async fn fetch_absent(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
    ) -> Result<usize, CacheError> {
        let absent = self.absent(chunks);
        if absent.is_empty() {
            return Ok(0);
        }
        self.ensure_for(source, &absent, Need::Ahead)
            .await
            .map(|_| absent.len())
    }

    /// [`ChunkCache::fetch_ahead`] of the part of a guess starting `at`
    /// stored bytes into it, once readers follow the guess that far, and
    /// while they agree with it, judged once a fetch slot is free (just
    /// before the chunks are claimed); `None`, fetching nothing, once they
    /// do not agree. Readers that stop following leave it to when they are
    /// quiet.
    pub async fn fetch_guess(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
        agreement: &Agreement,
        at: u64,
    ) -> Result<Option<usize>, CacheError> {
        if !agreement.reached(at).await {
            self.inner.demand.quiet().await;
        }
        let _slot = self.ahead_slot().await;
        if !agreement.right() {
            return Ok(None);
        }
        self.fetch_absent(source, chunks).await.map(Some)
    }

    /// [`ChunkCache::fetch_ahead`] once no reader has waited on a fetch of
    /// its own for a while: for guesses that may be unrelated to what runs.
    pub async fn fetch_when_idle(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
    ) -> Result<usize, CacheError> {
        self.inner.demand.quiet().await;
        self.fetch_ahead(source, chunks).await
    }
}

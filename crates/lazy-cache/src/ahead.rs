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
//! readers pause delays their next miss. What a wrong record fetched before
//! readers disagreed still costs its bytes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

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

/// How readers agree with a guess (a set of chunks): how many chunks they
/// had to fetch themselves that the guess holds, and that it does not.
#[derive(Debug)]
pub struct Agreement {
    guessed: HashSet<ChunkDigest>,
    inside: AtomicUsize,
    outside: AtomicUsize,
    wrong: AtomicBool,
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
}

/// The agreements being watched.
#[derive(Debug, Default)]
pub(crate) struct Agreements(Mutex<Vec<Weak<Agreement>>>);

impl Agreements {
    /// Counts readers' own fetches of `digests` in every live agreement.
    pub(crate) fn note(&self, digests: impl Iterator<Item = ChunkDigest> + Clone) {
        let mut list = self.0.lock().expect("agreements lock");
        list.retain(|a| a.strong_count() > 0);
        for agreement in list.iter().filter_map(Weak::upgrade) {
            for digest in digests.clone() {
                let counter = match agreement.guessed.contains(&digest) {
                    true => &agreement.inside,
                    false => &agreement.outside,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl ChunkCache {
    /// Starts counting how readers agree with a guess of `chunks`, for as
    /// long as the returned agreement lives.
    pub fn watch_guess(&self, chunks: impl IntoIterator<Item = ChunkDigest>) -> Arc<Agreement> {
        let agreement = Arc::new(Agreement {
            guessed: chunks.into_iter().collect(),
            inside: AtomicUsize::new(0),
            outside: AtomicUsize::new(0),
            wrong: AtomicBool::new(false),
        });
        let mut list = self.inner.agreements.0.lock().expect("agreements lock");
        list.push(Arc::downgrade(&agreement));
        agreement
    }

    /// Fetches those of `chunks` (one blob's) that are neither cached nor
    /// being fetched, as background work (see the module doc). Returns how
    /// many it fetched.
    pub async fn fetch_ahead(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
    ) -> Result<usize, CacheError> {
        let _slot = self
            .inner
            .ahead_slots
            .acquire()
            .await
            .expect("fetch-ahead semaphore never closed");
        self.fetch_absent(source, chunks).await
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

    /// [`ChunkCache::fetch_ahead`] while readers agree with the guess
    /// `agreement` watches, judged once a fetch slot is free (just before
    /// the chunks are claimed); `None`, fetching nothing, once they do not.
    pub async fn fetch_guess(
        &self,
        source: &Arc<dyn ChunkSource>,
        chunks: &[ChunkRecord],
        agreement: &Agreement,
    ) -> Result<Option<usize>, CacheError> {
        let _slot = self
            .inner
            .ahead_slots
            .acquire()
            .await
            .expect("fetch-ahead semaphore never closed");
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

//! The fetch path: claim missing chunks (single-flight), fetch them in
//! coalesced runs, verify them on a blocking thread, hand the bytes to the
//! readers waiting on them, and only then store them (file, index, ledger),
//! on a blocking thread too: a reader never waits for the disk.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use lazy_format::{ChunkDigest, ChunkRecord, decode_chunk};
use tokio::sync::watch;
use tracing::Instrument;

use crate::ahead::Need;
use crate::cache::Inner;
use crate::flight::{Claim, FlightGuard, wait};
use crate::plan::{coalesce, span};
use crate::read::ReadGuard;
use crate::{CacheError, ChunkSource};

/// Verified chunks of a run that still have to be stored.
type ToAdmit = Vec<(FlightGuard, ChunkDigest, Arc<Vec<u8>>)>;

/// Counts background work on fetched chunks (storing them, and the
/// evictions that follows), so that callers can wait until what was
/// fetched is on disk and the quota holds ([`crate::ChunkCache::settled`]).
#[derive(Debug)]
pub(crate) struct Admissions {
    pending: watch::Sender<usize>,
}

impl Default for Admissions {
    fn default() -> Self {
        Self {
            pending: watch::Sender::new(0),
        }
    }
}

impl Admissions {
    pub(crate) fn add(&self, n: usize) {
        self.pending.send_modify(|p| *p += n);
    }

    pub(crate) fn done(&self, n: usize) {
        self.pending.send_modify(|p| *p = p.saturating_sub(n));
    }

    /// Waits until nothing fetched is waiting to be stored.
    pub(crate) async fn settled(&self) {
        let mut rx = self.pending.subscribe();
        // The sender lives in `self`: the channel cannot close while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

impl Inner {
    /// Claims what nobody fetches yet, fetches it (coalesced), waits for
    /// the rest; the bytes land in `guard`. Returns chunks that still need
    /// a fetch (their fetcher gave up).
    pub(crate) async fn fetch_or_wait(
        self: &Arc<Self>,
        source: &Arc<dyn ChunkSource>,
        wanted: Vec<ChunkRecord>,
        guard: &mut ReadGuard,
        need: Need,
    ) -> Result<Vec<ChunkRecord>, CacheError> {
        let mut mine: Vec<(ChunkRecord, FlightGuard)> = Vec::new();
        let mut theirs = Vec::new();
        for record in wanted {
            match self.flights.claim(record.digest) {
                Claim::Mine(flight) => mine.push((record, flight)),
                Claim::Theirs(rx) => theirs.push((record, rx)),
            }
        }
        let _busy = (need == Need::Demand && !mine.is_empty()).then(|| {
            self.agreements.note(mine.iter().map(|(r, _)| *r));
            self.demand.busy()
        });
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
        for (fetched, error) in join_all(jobs).await {
            for (digest, data) in fetched {
                guard.keep(digest, data);
            }
            if let Some(e) = error {
                first_error = first_error.or(Some(e));
            }
        }
        let mut again = Vec::new();
        for (record, rx) in theirs {
            match wait(rx, record.digest).await {
                Ok(data) => guard.keep(record.digest, data),
                Err(CacheError::Abandoned(_)) => again.push(record),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(again),
        }
    }

    /// Fetches one coalesced run, verifies each chunk, wakes its waiters
    /// with the bytes, and queues the verified chunks for storing. Returns
    /// the chunks it got, and the first failure if any chunk failed.
    async fn fetch_run(
        self: &Arc<Self>,
        source: &Arc<dyn ChunkSource>,
        run: &[ChunkRecord],
        flights: Vec<FlightGuard>,
    ) -> (Vec<(ChunkDigest, Arc<Vec<u8>>)>, Option<CacheError>) {
        let range = span(run);
        let fetch_span = tracing::debug_span!(
            "fetch",
            blob = source.blob_name(),
            start = range.start,
            end = range.end,
            chunks = run.len()
        );
        let fetched = self
            .fetch_range(source, range.clone())
            .instrument(fetch_span.clone())
            .await;
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(e) => {
                for f in &flights {
                    f.complete(Err(e.clone()));
                }
                return (Vec::new(), Some(e));
            }
        };
        // Decompression and sha256 of up to a few MiB: not on a worker.
        let records = run.to_vec();
        let decode_span = fetch_span.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let _span = decode_span.enter();
            records
                .iter()
                .map(|record| {
                    let start =
                        usize::try_from(record.offset - range.start).expect("run fits memory");
                    let end = start + record.stored_len as usize;
                    decode_chunk(record, &bytes[start..end]).map(Arc::new)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("chunk decoding panicked");
        let mut out = Vec::with_capacity(run.len());
        let mut to_admit: ToAdmit = Vec::with_capacity(run.len());
        let mut failure = None;
        for ((record, flight), decoded) in run.iter().zip(flights).zip(decoded) {
            debug_assert_eq!(record.digest, flight.digest());
            match decoded {
                Ok(data) => {
                    self.metrics.chunks_fetched.inc();
                    self.hot
                        .lock()
                        .expect("hot set lock")
                        .put(record.digest, Arc::clone(&data));
                    flight.complete(Ok(Arc::clone(&data)));
                    out.push((record.digest, Arc::clone(&data)));
                    to_admit.push((flight, record.digest, data));
                }
                Err(e) => {
                    self.metrics.verification_failures.inc();
                    let err = CacheError::Verification {
                        digest: record.digest,
                        blob: source.blob_name().to_owned(),
                        reason: e.to_string(),
                    };
                    flight.complete(Err(err.clone()));
                    failure = failure.or(Some(err));
                }
            }
        }
        self.admit_later(to_admit, fetch_span);
        (out, failure)
    }

    /// Stores verified chunks on a blocking thread; each flight ends once
    /// its chunk is stored (or could not be: then a later read fetches it).
    fn admit_later(self: &Arc<Self>, chunks: ToAdmit, span: tracing::Span) {
        if chunks.is_empty() {
            return;
        }
        let n = chunks.len();
        let (inner, admissions) = (Arc::clone(self), Arc::clone(&self.admissions));
        admissions.add(n);
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            for (flight, digest, data) in chunks {
                if let Err(e) = inner.admit(digest, &data) {
                    tracing::warn!("serving chunk {digest} without caching it: {e}");
                }
                drop(flight);
            }
            inner.enforce_quota();
            drop(inner);
            admissions.done(n);
        });
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
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.fetch_seconds.observe(seconds);
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
                self.link.observe(bytes.len() as u64, seconds);
                Ok(bytes)
            }
        }
    }
}

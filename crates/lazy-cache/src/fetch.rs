//! The fetch path: claim missing chunks (single-flight), fetch them in
//! coalesced runs, verify, store, and wake the readers waiting on them.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use lazy_format::{ChunkDigest, ChunkRecord, decode_chunk};

use crate::cache::{Inner, ReadGuard};
use crate::flight::{Claim, FlightGuard, wait};
use crate::plan::{coalesce, span};
use crate::{CacheError, ChunkSource};

/// A fetched chunk: digest, bytes, and whether it was stored (and is held).
type Fetched = (ChunkDigest, Arc<Vec<u8>>, bool);

impl Inner {
    /// Claims what nobody fetches yet, fetches it (coalesced), waits for
    /// the rest; returns chunks that still need a fetch.
    pub(crate) async fn fetch_or_wait(
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
        for (fetched, error) in join_all(jobs).await {
            // Chunks stored before a failure in the same run are held too,
            // so the guard releases them.
            for (digest, data, stored) in fetched {
                if stored {
                    guard.held.push(digest);
                } else {
                    guard.unstored.insert(digest, data);
                }
            }
            if let Some(e) = error {
                first_error = first_error.or(Some(e));
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
    /// reports to the waiters. Returns the chunks it got as (digest, data,
    /// stored-and-held), and the first failure if any chunk failed.
    async fn fetch_run(
        &self,
        source: &Arc<dyn ChunkSource>,
        run: &[ChunkRecord],
        flights: Vec<FlightGuard>,
    ) -> (Vec<Fetched>, Option<CacheError>) {
        let range = span(run);
        let bytes = match self.fetch_range(source, range.clone()).await {
            Ok(bytes) => bytes,
            Err(e) => {
                for f in flights {
                    f.complete(Err(e.clone()));
                }
                return (Vec::new(), Some(e));
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
        (out, failure)
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
}

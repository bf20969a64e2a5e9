//! Single-flight: concurrent misses on one chunk make one fetch; the
//! others wait for its outcome, which carries the verified bytes. A flight
//! stays registered after its outcome is known, until the chunk is on disk
//! (the guard is dropped after admission): a reader arriving in between
//! gets the bytes from the flight instead of fetching them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lazy_format::ChunkDigest;
use tokio::sync::watch;

use crate::CacheError;

/// A fetch's outcome: the verified bytes, or why there are none.
pub(crate) type Fetched = Result<Arc<Vec<u8>>, CacheError>;

type Outcome = Option<Fetched>;

/// Fetches in progress, by chunk.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<HashMap<ChunkDigest, watch::Receiver<Outcome>>>>,
}

/// Who fetches a chunk.
pub(crate) enum Claim {
    /// The caller does; it must complete the guard.
    Mine(FlightGuard),
    /// Someone else does (or did, and is storing it); wait on this.
    Theirs(watch::Receiver<Outcome>),
}

impl Flights {
    /// Whether `digest` is being fetched (or stored after its fetch).
    pub(crate) fn in_flight(&self, digest: &ChunkDigest) -> bool {
        self.map
            .lock()
            .expect("flight map lock")
            .contains_key(digest)
    }

    /// Claims the fetch of `digest`, or joins the one in progress.
    pub(crate) fn claim(&self, digest: ChunkDigest) -> Claim {
        let mut map = self.map.lock().expect("flight map lock");
        if let Some(rx) = map.get(&digest) {
            return Claim::Theirs(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(digest, rx);
        Claim::Mine(FlightGuard {
            digest,
            tx,
            map: Arc::clone(&self.map),
        })
    }
}

/// The duty to report a claimed fetch's outcome. Dropping it ends the
/// flight; dropped unreported, it tells the waiters it was abandoned.
pub(crate) struct FlightGuard {
    digest: ChunkDigest,
    tx: watch::Sender<Outcome>,
    map: Arc<Mutex<HashMap<ChunkDigest, watch::Receiver<Outcome>>>>,
}

impl FlightGuard {
    /// The claimed chunk.
    pub(crate) fn digest(&self) -> ChunkDigest {
        self.digest
    }

    /// Wakes every waiter with the outcome. The flight stays registered
    /// until the guard is dropped; the first report is the one kept.
    pub(crate) fn complete(&self, outcome: Fetched) {
        self.tx.send_if_modified(|slot| {
            let fresh = slot.is_none();
            if fresh {
                *slot = Some(outcome);
            }
            fresh
        });
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.complete(Err(CacheError::Abandoned(self.digest)));
        self.map
            .lock()
            .expect("flight map lock")
            .remove(&self.digest);
    }
}

/// Waits for another caller's fetch to finish; returns its bytes.
pub(crate) async fn wait(mut rx: watch::Receiver<Outcome>, digest: ChunkDigest) -> Fetched {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().expect("waited for Some"),
        Err(_) => Err(CacheError::Abandoned(digest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_bytes_before_the_flight_ends() {
        let flights = Flights::default();
        let d = ChunkDigest([1; 32]);
        let Claim::Mine(guard) = flights.claim(d) else {
            panic!("first claim is mine")
        };
        let Claim::Theirs(rx) = flights.claim(d) else {
            panic!("second claim waits")
        };
        let waiter = tokio::spawn(wait(rx, d));
        guard.complete(Ok(Arc::new(vec![7; 3])));
        assert_eq!(waiter.await.unwrap(), Ok(Arc::new(vec![7; 3])));
        // Still storing: a late reader joins and gets the bytes at once.
        let Claim::Theirs(late) = flights.claim(d) else {
            panic!("the flight lasts until the guard drops")
        };
        assert_eq!(wait(late, d).await, Ok(Arc::new(vec![7; 3])));
        drop(guard);
        assert!(
            matches!(flights.claim(d), Claim::Mine(_)),
            "finished flights are forgotten"
        );
    }

    #[tokio::test]
    async fn dropped_guard_reports_abandoned() {
        let flights = Flights::default();
        let d = ChunkDigest([2; 32]);
        let Claim::Mine(guard) = flights.claim(d) else {
            panic!()
        };
        let Claim::Theirs(rx) = flights.claim(d) else {
            panic!()
        };
        drop(guard);
        assert_eq!(wait(rx, d).await, Err(CacheError::Abandoned(d)));
    }
}

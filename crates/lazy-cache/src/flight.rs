//! Single-flight: concurrent misses on one chunk make one fetch; the
//! others wait for its outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lazy_format::ChunkDigest;
use tokio::sync::watch;

use crate::CacheError;

type Outcome = Option<Result<(), CacheError>>;

/// Fetches in progress, by chunk.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<HashMap<ChunkDigest, watch::Receiver<Outcome>>>>,
}

/// Who fetches a chunk.
pub(crate) enum Claim {
    /// The caller does; it must complete the guard.
    Mine(FlightGuard),
    /// Someone else does; wait on this.
    Theirs(watch::Receiver<Outcome>),
}

impl Flights {
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
            tx: Some(tx),
            map: Arc::clone(&self.map),
        })
    }
}

/// The duty to report a claimed fetch's outcome; dropping it unreported
/// tells the waiters it was abandoned.
pub(crate) struct FlightGuard {
    digest: ChunkDigest,
    tx: Option<watch::Sender<Outcome>>,
    map: Arc<Mutex<HashMap<ChunkDigest, watch::Receiver<Outcome>>>>,
}

impl FlightGuard {
    /// The claimed chunk.
    pub(crate) fn digest(&self) -> ChunkDigest {
        self.digest
    }

    /// Reports the outcome to every waiter.
    pub(crate) fn complete(mut self, outcome: Result<(), CacheError>) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Result<(), CacheError>) {
        if let Some(tx) = self.tx.take() {
            self.map
                .lock()
                .expect("flight map lock")
                .remove(&self.digest);
            let _ = tx.send(Some(outcome));
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let digest = self.digest;
        self.finish(Err(CacheError::Abandoned(digest)));
    }
}

/// Waits for another caller's fetch to finish.
pub(crate) async fn wait(
    mut rx: watch::Receiver<Outcome>,
    digest: ChunkDigest,
) -> Result<(), CacheError> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().expect("waited for Some"),
        Err(_) => Err(CacheError::Abandoned(digest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_claim_waits_for_the_first() {
        let flights = Flights::default();
        let d = ChunkDigest([1; 32]);
        let Claim::Mine(guard) = flights.claim(d) else {
            panic!("first claim is mine")
        };
        let Claim::Theirs(rx) = flights.claim(d) else {
            panic!("second claim waits")
        };
        let waiter = tokio::spawn(wait(rx, d));
        guard.complete(Ok(()));
        assert_eq!(waiter.await.unwrap(), Ok(()));
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

//! Pull-through mirrors: reads of an image in registry R try R's mirrors
//! first, in order, then R itself (what docker's `registry-mirrors` and
//! containerd's `hosts.toml` do). A mirror that fails to answer is skipped
//! for a while, so that a dead mirror does not slow every chunk fetch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::RegistryClient;
use crate::{OciError, Reference};

/// How long a mirror that failed to answer is left out.
const MIRROR_BACKOFF: Duration = Duration::from_secs(30);

/// Mirrors that failed recently, until when they are skipped.
#[derive(Debug, Default)]
pub(crate) struct MirrorHealth {
    down_until: Mutex<HashMap<String, Instant>>,
}

impl MirrorHealth {
    fn is_down(&self, mirror: &str) -> bool {
        let mut down = self.down_until.lock().expect("mirror health lock");
        match down.get(mirror) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                down.remove(mirror);
                false
            }
            None => false,
        }
    }

    fn mark_down(&self, mirror: &str) {
        self.down_until
            .lock()
            .expect("mirror health lock")
            .insert(mirror.to_owned(), Instant::now() + MIRROR_BACKOFF);
    }
}

impl RegistryClient {
    /// Runs `read` against each usable mirror of the reference's registry,
    /// then against the registry itself; the first success wins. A mirror
    /// that does not have the content (404) is simply passed over; one that
    /// cannot be reached or fails is also left out for a while.
    pub(crate) async fn read_via_mirrors<T, F, Fut>(
        &self,
        reference: &Reference,
        read: F,
    ) -> Result<T, OciError>
    where
        F: Fn(Reference) -> Fut,
        Fut: Future<Output = Result<T, OciError>>,
    {
        let mirrors = self
            .inner
            .opts
            .mirrors
            .get(&reference.registry)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for mirror in mirrors {
            if self.inner.mirror_health.is_down(mirror) {
                continue;
            }
            let mirrored = Reference {
                registry: mirror.clone(),
                ..reference.clone()
            };
            match read(mirrored).await {
                Ok(value) => return Ok(value),
                Err(e @ (OciError::BlobNotFound { .. } | OciError::ManifestNotFound { .. })) => {
                    tracing::debug!(%mirror, "mirror lacks it: {e}");
                }
                Err(e) => {
                    tracing::warn!(%mirror, "mirror failed, using the next source for {MIRROR_BACKOFF:?}: {e}");
                    self.inner.mirror_health.mark_down(mirror);
                }
            }
        }
        read(reference.clone()).await
    }
}

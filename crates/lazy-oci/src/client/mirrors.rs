//! Pull-through mirrors: reads of an image in registry R try R's mirrors
//! first, in order, then R itself (what docker's `registry-mirrors` and
//! containerd's `hosts.toml` do). A mirror that fails to answer is skipped
//! for a while, so that a dead mirror does not slow every chunk fetch.

use std::future::Future;

use super::RegistryClient;
use crate::{OciError, Reference};

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
            if self.inner.mirror_health.down_until(mirror).is_some() {
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
                    let backoff = self.inner.mirror_health.backoff();
                    tracing::warn!(%mirror, "mirror failed, using the next source for {backoff:?}: {e}");
                    self.inner.mirror_health.mark_down(mirror);
                }
            }
        }
        read(reference.clone()).await
    }
}

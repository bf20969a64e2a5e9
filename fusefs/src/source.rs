//! The registry as a [`ChunkSource`]: range reads of one layer blob.

use std::ops::Range;

use futures_util::future::BoxFuture;
use lazy_cache::{ChunkSource, SourceError};
use lazy_oci::{Reference, RegistryClient};

/// Range reads of blob `digest` in the repository of `reference`.
pub struct RegistrySource {
    client: RegistryClient,
    reference: Reference,
    digest: String,
}

impl RegistrySource {
    /// A source for one layer blob.
    pub fn new(client: RegistryClient, reference: Reference, digest: String) -> Self {
        Self {
            client,
            reference,
            digest,
        }
    }
}

impl ChunkSource for RegistrySource {
    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            self.client
                .read_range(&self.reference, &self.digest, range)
                .await
                .map_err(|e| SourceError(e.to_string()))
        })
    }

    fn blob_name(&self) -> &str {
        &self.digest
    }
}

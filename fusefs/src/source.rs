//! Where images come from: registries, and HTTP content-addressed stores
//! by name (`[stores."NAME"]`: images `NAME/repository:tag` are read from
//! that store instead of a registry). A layer blob of either becomes the
//! cache's [`ChunkSource`].

use std::collections::HashMap;
use std::ops::Range;

use futures_util::future::BoxFuture;
use lazy_cache::{ChunkSource, SourceError};
use lazy_cas::CasClient;
use lazy_image::ImageStore;
use lazy_oci::{Reference, RegistryClient};

/// The configured HTTP stores, by name.
#[derive(Debug, Default, Clone)]
pub struct Stores(HashMap<String, CasClient>);

impl Stores {
    /// Stores by name.
    pub fn new(stores: HashMap<String, CasClient>) -> Self {
        Self(stores)
    }

    /// Where `reference` lives: its store if its registry names one, else
    /// the registry (through `client`).
    pub fn image_store(&self, reference: &Reference, client: &RegistryClient) -> ImageStore {
        match self.0.get(&reference.registry) {
            Some(store) => ImageStore::Cas {
                client: store.clone(),
                reference: reference.clone(),
            },
            None => ImageStore::Registry {
                client: client.clone(),
                reference: reference.clone(),
            },
        }
    }
}

/// Range reads of one layer blob of an image store.
pub struct BlobSource {
    store: ImageStore,
    digest: String,
}

impl BlobSource {
    /// A source for layer blob `digest` of `store`.
    pub fn new(store: ImageStore, digest: String) -> Self {
        Self { store, digest }
    }
}

impl ChunkSource for BlobSource {
    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            self.store
                .read_range(&self.digest, range)
                .await
                .map_err(|e| SourceError(e.to_string()))
        })
    }

    fn blob_name(&self) -> &str {
        &self.digest
    }
}

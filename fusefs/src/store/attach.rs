//! Attaching the layers containers/storage asks the store for. The first
//! layer asked for under an image reference attaches the whole image: the
//! metadata of all its layers in one go, and its prefetch record, as
//! `lazyrun` would. A layer the image does not list (its tag moved since)
//! is attached alone, by digest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lazy_control::protocol::PullPolicy;
use lazy_control::{ControlError, ErrorKind};
use tokio::sync::OnceCell;

use crate::fuse::layer::AttachedLayer;
use crate::state::{DaemonState, OpResult};

/// Layer digests of each image attached for the store.
type ImageLayers = Arc<OnceCell<Vec<String>>>;

/// Attaches layers for the store.
pub struct StoreAttacher {
    state: Arc<DaemonState>,
    /// Per image reference, once attached. A failed attach is not kept:
    /// the next lookup tries again.
    images: Mutex<HashMap<String, ImageLayers>>,
}

impl StoreAttacher {
    /// Attaches through `state`.
    pub fn new(state: Arc<DaemonState>) -> Self {
        Self {
            state,
            images: Mutex::new(HashMap::new()),
        }
    }

    /// Attaches layer `digest` of image `reference` (or finds it attached).
    pub async fn layer(&self, reference: &str, digest: &str) -> OpResult<Arc<AttachedLayer>> {
        let listed = match self.image_layers(reference).await {
            Ok(layers) => layers.iter().any(|l| l == digest),
            Err(e) => {
                tracing::debug!(%reference, "attaching the whole image failed: {e}");
                false
            }
        };
        if !listed {
            self.state
                .attach_layer_blob(reference, digest, None)
                .await?;
        }
        self.state.table().by_digest(digest).ok_or_else(|| {
            ControlError::new(
                ErrorKind::Busy,
                format!("layer {digest} was detached while attaching; try again"),
            )
        })
    }

    async fn image_layers(&self, reference: &str) -> OpResult<Vec<String>> {
        let cell = {
            let mut images = self.images.lock().expect("store images lock");
            Arc::clone(images.entry(reference.to_owned()).or_default())
        };
        let layers = cell
            .get_or_try_init(|| async {
                let image = self
                    .state
                    .attach(reference, false, None, PullPolicy::Missing, None)
                    .await?;
                tracing::info!(%reference, layers = image.layers.len(), "attached for the layer store");
                Ok::<_, ControlError>(image.layers.into_iter().map(|l| l.digest).collect())
            })
            .await?;
        Ok(layers.clone())
    }
}

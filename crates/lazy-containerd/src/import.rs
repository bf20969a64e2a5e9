//! Importing a lazy image: what `ctr image pull` would leave behind,
//! without a layer downloaded. Content store: the manifest and config.
//! Snapshots: one remote snapshot per layer, named by its chain ID, made by
//! the lazyfs snapshotter when asked to prepare a layer with the labels of
//! [`lazy_control::snapshot_labels`]. Images: the record naming the
//! manifest. A lease covers the whole import, so a failure part way leaves
//! nothing containerd keeps; the gc labels on the config and manifest keep
//! the snapshots and config alive once the image names them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{CreateImageRequest, Image, UpdateImageRequest};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use lazy_control::snapshot_labels::{self, SNAPSHOTTER_PREFIX};

use crate::chain::chain_ids;
use crate::connection::Containerd;
use crate::content::write_blob;
use crate::error::ContainerdError;

/// Prepare attempts while containerd cannot reach the snapshotter (0.5 s apart).
const PREPARE_ATTEMPTS: u32 = 10;

/// A blob as the registry served it.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its media type.
    pub media_type: String,
    /// `sha256:…` of `bytes`.
    pub digest: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A lazy image to import.
#[derive(Debug, Clone)]
pub struct LazyImage {
    /// The name containerd lists it under (`ctr run NAME …`).
    pub name: String,
    /// The registry reference lazyfsd attaches its layers from.
    pub reference: String,
    /// The manifest.
    pub manifest: Blob,
    /// The config.
    pub config: Blob,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
}

/// How a layer came to be in containerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerOutcome {
    /// Its snapshot was there already (another image shares it).
    Present,
    /// Attached in lazyfsd and committed as a remote snapshot now.
    Attached,
}

/// Told as each layer is done.
pub trait ImportProgress {
    /// Layer `index` (of `count`, bottom first) is ready.
    fn layer_done(&self, index: usize, count: usize, digest: &str, outcome: LayerOutcome);
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Each layer's outcome, bottom first.
    pub layers: Vec<LayerOutcome>,
}

/// Imports `image` for `snapshotter` (the name containerd's config gives
/// the lazyfs proxy plugin).
pub async fn import(
    containerd: &mut Containerd,
    snapshotter: &str,
    image: &LazyImage,
    progress: &dyn ImportProgress,
) -> Result<Imported, ContainerdError> {
    let chains = chain_ids(&diff_ids(image)?);
    if chains.is_empty() {
        return Err(ContainerdError::BadConfig {
            digest: image.config.digest.clone(),
            reason: "no layers".into(),
        });
    }
    containerd.take_lease().await?;
    let result = import_leased(containerd, snapshotter, image, &chains, progress).await;
    // Released on failure too: what the lease alone kept is then collected.
    let released = containerd.release_lease().await;
    let layers = result?;
    released?;
    Ok(Imported { layers })
}

async fn import_leased(
    containerd: &Containerd,
    snapshotter: &str,
    image: &LazyImage,
    chains: &[String],
    progress: &dyn ImportProgress,
) -> Result<Vec<LayerOutcome>, ContainerdError> {
    let top = chains.last().expect("layers");
    let config_labels = [(
        format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
        top.clone(),
    )];
    write_blob(
        containerd,
        &image.config.digest,
        &image.config.bytes,
        config_labels.into(),
    )
    .await?;
    let manifest_labels = [(
        "containerd.io/gc.ref.content.config".to_owned(),
        image.config.digest.clone(),
    )];
    write_blob(
        containerd,
        &image.manifest.digest,
        &image.manifest.bytes,
        manifest_labels.into(),
    )
    .await?;
    let mut outcomes = Vec::with_capacity(chains.len());
    for (index, (layer, chain)) in image.layers.iter().zip(chains).enumerate() {
        let parent = index
            .checked_sub(1)
            .map(|i| chains[i].as_str())
            .unwrap_or("");
        let outcome = prepare_layer(containerd, snapshotter, image, layer, chain, parent)
            .await
            .map_err(|e| match e {
                ContainerdError::Rpc { what, status } => ContainerdError::Rpc {
                    what: format!("layer {}/{} {layer}: {what}", index + 1, chains.len()),
                    status,
                },
                other => other,
            })?;
        progress.layer_done(index, chains.len(), layer, outcome);
        outcomes.push(outcome);
    }
    put_image(containerd, image).await?;
    Ok(outcomes)
}

/// The config's `rootfs.diff_ids`, one per layer.
fn diff_ids(image: &LazyImage) -> Result<Vec<String>, ContainerdError> {
    let bad = |reason: String| ContainerdError::BadConfig {
        digest: image.config.digest.clone(),
        reason,
    };
    let config: serde_json::Value =
        serde_json::from_slice(&image.config.bytes).map_err(|e| bad(e.to_string()))?;
    let ids: Vec<String> = config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("no rootfs.diff_ids".into()))?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("a diff_id is not a string".into()))?;
    if ids.len() != image.layers.len() {
        return Err(bad(format!(
            "{} diff_ids for {} layers",
            ids.len(),
            image.layers.len()
        )));
    }
    Ok(ids)
}

/// Makes the snapshot `chain` of `layer` exist, remote.
async fn prepare_layer(
    containerd: &Containerd,
    snapshotter: &str,
    image: &LazyImage,
    layer: &str,
    chain: &str,
    parent: &str,
) -> Result<LayerOutcome, ContainerdError> {
    let mut snapshots = SnapshotsClient::new(containerd.channel());
    let stat = StatSnapshotRequest {
        snapshotter: snapshotter.to_owned(),
        key: chain.to_owned(),
    };
    match snapshots.stat(containerd.request(stat)).await {
        Ok(_) => return Ok(LayerOutcome::Present),
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(ContainerdError::rpc("looking up its snapshot", s)),
    }
    let key = extract_key(chain);
    let labels: HashMap<String, String> = [
        (snapshot_labels::TARGET, chain),
        (snapshot_labels::IMAGE, image.reference.as_str()),
        (snapshot_labels::LAYER, layer),
        (snapshot_labels::LAZY_LAYER, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let prepare = PrepareSnapshotRequest {
        snapshotter: snapshotter.to_owned(),
        key: key.clone(),
        parent: parent.to_owned(),
        labels,
    };
    match prepare_retrying(&mut snapshots, containerd, prepare).await {
        Err(s) if s.code() == Code::AlreadyExists => Ok(LayerOutcome::Attached),
        Err(s) => Err(ContainerdError::rpc(
            format!("snapshotter {snapshotter:?} could not prepare it"),
            s,
        )),
        Ok(_) => {
            // An ordinary snapshot to be filled by applying the layer: not
            // something a lazy layer can be. Take it back.
            let remove = RemoveSnapshotRequest {
                snapshotter: snapshotter.to_owned(),
                key,
            };
            if let Err(s) = snapshots.remove(containerd.request(remove)).await {
                tracing::warn!("removing the unusable snapshot: {}", s.message());
            }
            Err(ContainerdError::NotRemote {
                snapshotter: snapshotter.to_owned(),
                layer: layer.to_owned(),
            })
        }
    }
}

/// Prepare, tried again for a few seconds while containerd cannot reach
/// the snapshotter: after the snapshotter restarts, containerd's
/// connection to it fails fast until its next reconnect (up to 3 s).
/// Answers from the snapshotter itself (lazyfsd down, …) are final.
async fn prepare_retrying(
    snapshots: &mut SnapshotsClient<containerd_client::tonic::transport::Channel>,
    containerd: &Containerd,
    prepare: PrepareSnapshotRequest,
) -> Result<(), containerd_client::tonic::Status> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match snapshots.prepare(containerd.request(prepare.clone())).await {
            Ok(_) => return Ok(()),
            Err(s)
                if s.code() == Code::Unavailable
                    && !s.message().contains(SNAPSHOTTER_PREFIX)
                    && attempts < PREPARE_ATTEMPTS =>
            {
                tracing::debug!(
                    "containerd cannot reach the snapshotter yet: {}",
                    s.message()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// A unique active-snapshot key, in containerd's unpacker's style.
fn extract_key(chain: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("extract-{nanos}-{} {chain}", std::process::id())
}

/// Creates the image record, or points an existing one at this manifest.
async fn put_image(containerd: &Containerd, image: &LazyImage) -> Result<(), ContainerdError> {
    let size = i64::try_from(image.manifest.bytes.len()).expect("small manifest");
    let record = Image {
        name: image.name.clone(),
        labels: HashMap::new(),
        target: Some(Descriptor {
            media_type: image.manifest.media_type.clone(),
            digest: image.manifest.digest.clone(),
            size,
            annotations: HashMap::new(),
        }),
        created_at: None,
        updated_at: None,
    };
    let mut images = ImagesClient::new(containerd.channel());
    let create = CreateImageRequest {
        image: Some(record.clone()),
    };
    match images.create(containerd.request(create)).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => {
            let update = UpdateImageRequest {
                image: Some(record),
                update_mask: None,
            };
            images
                .update(containerd.request(update))
                .await
                .map(drop)
                .map_err(|s| ContainerdError::rpc(format!("updating image {}", image.name), s))
        }
        Err(s) => Err(ContainerdError::rpc(
            format!("creating image {}", image.name),
            s,
        )),
    }
}

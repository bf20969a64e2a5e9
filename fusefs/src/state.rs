//! The daemon's state and the operations of the control API: attach,
//! detach, list, stats, gc, verify.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fuser::Notifier;
use futures_util::future::join_all;
use lazy_cache::{CacheMetrics, ChunkCache, MetaStore};
use lazy_convert::{
    ImageStore, fetch_lazy_manifest, fetch_prefetch_record, prefetch_tag, read_layer_meta,
};
use lazy_format::{ChunkDigest, LayerMeta};
use lazy_oci::{Reference, RegistryClient};

use crate::attached::{AttachList, AttachRecord};
use crate::images::{ImageRecord, LocalImages};
use crate::inode::ROOT_INO;
use crate::layer::AttachedLayer;
use crate::prefetch::{PrefetchMode, prefetch_all, prefetch_record};
use crate::protocol::{AttachedImage, LayerInfo, PullPolicy, RegistryCredentials, StatsInfo};
use crate::recorder::Recorder;
use crate::source::RegistrySource;
use crate::view::LayerTable;

/// Everything the control API works on.
pub struct DaemonState {
    /// Attached layers, shared with the FUSE adapter.
    pub table: Arc<LayerTable>,
    /// The shared chunk cache.
    pub cache: ChunkCache,
    /// Cache metrics (for stats).
    pub metrics: CacheMetrics,
    /// Cached layer metadata.
    pub meta_store: MetaStore,
    /// Registry client.
    pub client: RegistryClient,
    /// Mountpoint (for paths in answers).
    pub mountpoint: PathBuf,
    /// Attached layers as persisted.
    pub attached: Mutex<AttachList>,
    /// Kernel cache invalidation, once mounted.
    pub notifier: Mutex<Option<Notifier>>,
    /// Gauge of attached layers.
    pub attached_gauge: prometheus::IntGauge,
    /// Prefetch after attach unless the request says otherwise.
    pub prefetch_default: PrefetchMode,
    /// Prefetch recordings.
    pub recorder: Arc<Recorder>,
    /// Images attached before, for attaches without the registry.
    pub images: LocalImages,
}

/// Image configs are small; a bigger one is refused, not buffered.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A control operation's failure, as told to the client.
pub type OpResult<T> = Result<T, String>;

impl DaemonState {
    /// Attaches every layer of `image`; returns them bottom first, with the
    /// image config. With `pull` other than always, an image attached
    /// before is used as it was, without the registry. The metadata of
    /// new layers and the config are fetched concurrently: on a WAN each
    /// sequential request would add a round trip to every container start.
    pub async fn attach(
        &self,
        image: &str,
        pin: bool,
        prefetch: Option<PrefetchMode>,
        pull: PullPolicy,
        credentials: Option<&RegistryCredentials>,
    ) -> OpResult<AttachedImage> {
        if pull != PullPolicy::Always {
            if let Some(local) = self.attach_local(image, pin)? {
                return Ok(local);
            }
            if pull == PullPolicy::Never {
                return Err(format!(
                    "{image} was never attached on this host (pull policy: never)"
                ));
            }
        }
        let reference: Reference = image.parse().map_err(|e| format!("{e}"))?;
        let client = match credentials {
            Some(c) => self
                .client
                .with_credentials(&reference.registry, &c.username, &c.password),
            None => self.client.clone(),
        };
        let store = ImageStore::Registry {
            client: client.clone(),
            reference: reference.clone(),
        };
        let manifest = fetch_lazy_manifest(&store, image)
            .await
            .map_err(|e| format!("attaching {image}: {e}"))?;
        let mut cached = HashMap::new();
        let mut missing = Vec::new();
        for desc in manifest.manifest.layers() {
            let digest = desc.digest().to_string();
            if self.table.by_digest(&digest).is_some() || cached.contains_key(&digest) {
                continue;
            }
            match self.meta_store.get(&digest).map_err(|e| e.to_string())? {
                Some((meta, _, _)) => {
                    cached.insert(digest, meta);
                }
                None => missing.push(desc),
            }
        }
        let config_desc = manifest.manifest.config();
        let config = async {
            store
                .fetch_blob(config_desc.digest().as_ref(), MAX_CONFIG_BYTES)
                .await
                .map_err(|e| format!("attaching {image}: image config: {e}"))
        };
        let metas = join_all(missing.iter().map(|desc| async {
            let (meta, tail) = read_layer_meta(&store, desc, image)
                .await
                .map_err(|e| format!("attaching {image}: {e}"))?;
            self.meta_store
                .put(desc.digest().as_ref(), desc.size(), &tail)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((desc.digest().to_string(), meta))
        }));
        let (config, metas) = tokio::join!(config, metas);
        let config = String::from_utf8(config?)
            .map_err(|_| format!("attaching {image}: the image config is not UTF-8"))?;
        for fetched in metas {
            let (digest, meta) = fetched?;
            cached.insert(digest, meta);
        }
        let mut infos = Vec::new();
        for desc in manifest.manifest.layers() {
            let digest = desc.digest().to_string();
            if let Some(meta) = cached.remove(&digest) {
                self.attach_layer(&digest, image, &reference.to_string(), pin, meta, &client)?;
            }
            infos.push(self.info(&digest).ok_or("layer vanished while attaching")?);
        }
        let record = ImageRecord {
            reference: image.to_owned(),
            manifest_digest: manifest.digest.clone(),
            config: config.clone(),
            layers: infos.iter().map(|l| l.digest.clone()).collect(),
        };
        if let Err(e) = self.images.put(&record) {
            tracing::warn!("remembering {image}: {e}");
        }
        let mode = prefetch.unwrap_or(self.prefetch_default);
        if mode != PrefetchMode::None {
            let layers: Vec<Arc<AttachedLayer>> = manifest
                .manifest
                .layers()
                .iter()
                .filter_map(|d| self.table.by_digest(d.digest().as_ref()))
                .collect();
            let record_store = ImageStore::Registry {
                client: self.client.clone(),
                reference: reference.with_tag(&prefetch_tag(&manifest.digest)),
            };
            let (cache, image) = (self.cache.clone(), image.to_owned());
            tokio::spawn(async move {
                match fetch_prefetch_record(&record_store, &image).await {
                    Ok(Some(record)) => {
                        let n = prefetch_record(&cache, &layers, &record).await;
                        tracing::info!(%image, chunks = n, "prefetched the recorded startup set");
                    }
                    Ok(None) => tracing::debug!(%image, "no prefetch record"),
                    Err(e) => tracing::warn!(%image, "prefetch record unusable: {e}"),
                }
                if mode == PrefetchMode::All {
                    prefetch_all(&cache, &layers).await;
                    tracing::info!(%image, "prefetched the whole image");
                }
            });
        }
        Ok(AttachedImage {
            manifest_digest: manifest.digest.clone(),
            config,
            layers: infos,
        })
    }

    /// Attaches an image as attached before, without the registry: its
    /// remembered config and layers, from cached metadata. `None` when it
    /// was not, or a layer's metadata is gone.
    fn attach_local(&self, image: &str, pin: bool) -> OpResult<Option<AttachedImage>> {
        let Some(record) = self.images.get(image) else {
            return Ok(None);
        };
        let repository = match image.parse::<Reference>() {
            Ok(r) => r.to_string(),
            Err(_) => return Ok(None),
        };
        let mut infos = Vec::new();
        for digest in &record.layers {
            if self.table.by_digest(digest).is_none() {
                let Some((meta, _, _)) = self.meta_store.get(digest).map_err(|e| e.to_string())?
                else {
                    return Ok(None);
                };
                self.attach_layer(digest, image, &repository, pin, meta, &self.client)?;
            }
            infos.push(self.info(digest).ok_or("layer vanished while attaching")?);
        }
        tracing::debug!(%image, "attached as before, without the registry");
        Ok(Some(AttachedImage {
            manifest_digest: record.manifest_digest,
            config: record.config,
            layers: infos,
        }))
    }

    /// Installs one layer and persists it in the attached-layer list.
    fn attach_layer(
        &self,
        digest: &str,
        image: &str,
        repository: &str,
        pin: bool,
        meta: LayerMeta,
        client: &RegistryClient,
    ) -> OpResult<()> {
        let slot = self.attached.lock().expect("attach list lock").next_slot();
        let record = AttachRecord {
            digest: digest.to_owned(),
            slot,
            image: image.to_owned(),
            repository: repository.to_owned(),
            pinned: pin,
        };
        self.install(&record, meta, client);
        let mut list = self.attached.lock().expect("attach list lock");
        list.records.push(record);
        list.save()
            .map_err(|e| format!("saving the attached-layer list: {e}"))
    }

    /// Re-attaches the persisted layers from cached metadata (at start).
    pub fn restore(&self) {
        let records = self
            .attached
            .lock()
            .expect("attach list lock")
            .records
            .clone();
        let mut kept = Vec::new();
        for record in records {
            match self.meta_store.get(&record.digest) {
                Ok(Some((meta, _, _))) => {
                    self.install(&record, meta, &self.client);
                    kept.push(record);
                }
                other => tracing::warn!(
                    "cannot re-attach {}: metadata not cached ({other:?})",
                    record.digest
                ),
            }
        }
        let mut list = self.attached.lock().expect("attach list lock");
        list.records = kept;
        if let Err(e) = list.save() {
            tracing::warn!("saving the attached-layer list: {e}");
        }
    }

    fn install(&self, record: &AttachRecord, meta: LayerMeta, client: &RegistryClient) {
        let reference: Reference = record.repository.parse().expect("stored references parse");
        let source = Arc::new(RegistrySource::new(
            client.clone(),
            reference,
            record.digest.clone(),
        ));
        if record.pinned {
            self.cache.pin(chunk_digests(&meta));
        }
        let layer = AttachedLayer::new(record.digest.clone(), record.slot, meta, source);
        self.table.insert(Arc::new(layer));
        self.attached_gauge.set(self.table.all().len() as i64);
    }

    /// Detaches a layer digest, or every layer attached for an image.
    pub fn detach(&self, target: &str) -> OpResult<()> {
        let mut list = self.attached.lock().expect("attach list lock");
        let doomed: Vec<AttachRecord> = list
            .records
            .iter()
            .filter(|r| r.digest == target || r.image == target)
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Err(format!("nothing attached as {target}"));
        }
        for record in &doomed {
            if let Some(layer) = self.table.remove(&record.digest)
                && record.pinned
            {
                self.cache.unpin(chunk_digests(&layer.meta));
            }
            if let Some(notifier) = self.notifier.lock().expect("notifier lock").as_ref() {
                // The kernel keeps names for a day; tell it this one is gone.
                let _ = notifier.inval_entry(
                    fuser::INodeNo(ROOT_INO),
                    std::ffi::OsStr::new(&record.digest),
                );
            }
        }
        list.records.retain(|r| !doomed.contains(r));
        self.images.remove(target);
        list.save()
            .map_err(|e| format!("saving the attached-layer list: {e}"))?;
        self.attached_gauge.set(self.table.all().len() as i64);
        Ok(())
    }

    /// Starts recording the chunk reads of an attached image's layers.
    pub async fn record_start(&self, image: &str) -> OpResult<()> {
        let reference: Reference = image.parse().map_err(|e| format!("{e}"))?;
        let store = ImageStore::Registry {
            client: self.client.clone(),
            reference,
        };
        let manifest = fetch_lazy_manifest(&store, image)
            .await
            .map_err(|e| format!("recording {image}: {e}"))?;
        let layers: Vec<String> = manifest
            .manifest
            .layers()
            .iter()
            .map(|d| d.digest().to_string())
            .collect();
        if let Some(missing) = layers.iter().find(|d| self.table.by_digest(d).is_none()) {
            return Err(format!(
                "recording {image}: layer {missing} is not attached"
            ));
        }
        self.recorder.start(layers)
    }

    /// Every attached layer.
    pub fn list(&self) -> Vec<LayerInfo> {
        let list = self.attached.lock().expect("attach list lock");
        list.records
            .iter()
            .filter_map(|r| self.info_locked(r))
            .collect()
    }

    fn info(&self, digest: &str) -> Option<LayerInfo> {
        let list = self.attached.lock().expect("attach list lock");
        list.records
            .iter()
            .find(|r| r.digest == digest)
            .and_then(|r| self.info_locked(r))
    }

    fn info_locked(&self, record: &AttachRecord) -> Option<LayerInfo> {
        let layer = self.table.by_digest(&record.digest)?;
        let stats = layer.meta.stats();
        Some(LayerInfo {
            digest: record.digest.clone(),
            image: record.image.clone(),
            path: self.mountpoint.join(&record.digest).display().to_string(),
            entries: stats.entries,
            file_bytes: stats.file_bytes,
            pinned: record.pinned,
        })
    }

    /// Cache and fetch counters.
    pub fn stats(&self) -> StatsInfo {
        let (bytes, chunks) = self.cache.usage();
        let m = &self.metrics;
        StatsInfo {
            cache_bytes: bytes,
            cache_chunks: chunks as u64,
            quota_bytes: self.cache.config().quota_bytes,
            fetched_bytes: m.bytes_fetched.get(),
            fetched_chunks: m.chunks_fetched.get(),
            requests: m.requests.get(),
            hits: m.hits.get(),
            misses: m.misses.get(),
            evictions: m.evictions.get(),
            verification_failures: m.verification_failures.get(),
            attached_layers: self.table.all().len() as u64,
        }
    }
}

fn chunk_digests(meta: &LayerMeta) -> HashSet<ChunkDigest> {
    meta.chunks.iter().map(|c| c.digest).collect()
}

//! The daemon's state and the operations of the control API: attach,
//! detach, list, stats, gc, verify.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fuser::Notifier;
use lazy_cache::{CacheMetrics, ChunkCache, MetaStore};
use lazy_convert::{ImageStore, fetch_lazy_manifest};
use lazy_format::{ChunkDigest, LayerMeta};
use lazy_oci::{Reference, RegistryClient};

use crate::attached::{AttachList, AttachRecord};
use crate::images::LocalImages;
use crate::inode::{ROOT_INO, ino_of};
use crate::layer::AttachedLayer;
use crate::prefetch::PrefetchMode;
use crate::protocol::{LayerInfo, StatsInfo};
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

/// A control operation's failure, as told to the client.
pub type OpResult<T> = Result<T, String>;

impl DaemonState {
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

    pub(crate) fn install(&self, record: &AttachRecord, meta: LayerMeta, client: &RegistryClient) {
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
        self.drop_page_caches(&layers);
        self.recorder.start(layers)
    }

    /// Makes the kernel forget the cached pages of every file of `layers`,
    /// so that a recording sees every read (pages from an earlier run would
    /// be served without asking lazyfsd).
    fn drop_page_caches(&self, layers: &[String]) {
        let notifier = self.notifier.lock().expect("notifier lock");
        let Some(notifier) = notifier.as_ref() else {
            return;
        };
        for layer in layers.iter().filter_map(|d| self.table.by_digest(d)) {
            for (index, entry) in layer.meta.entries.iter().enumerate() {
                if !matches!(entry.kind, lazy_format::EntryKind::File { .. }) {
                    continue;
                }
                let Ok(index) = u32::try_from(index) else {
                    break;
                };
                // ENOENT: the kernel holds no inode for it, nothing to drop.
                let _ = notifier.inval_inode(fuser::INodeNo(ino_of(layer.slot, index)), 0, 0);
            }
        }
    }

    /// Every attached layer.
    pub fn list(&self) -> Vec<LayerInfo> {
        let list = self.attached.lock().expect("attach list lock");
        list.records
            .iter()
            .filter_map(|r| self.info_locked(r))
            .collect()
    }

    pub(crate) fn info(&self, digest: &str) -> Option<LayerInfo> {
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
        let (copies, copy_bytes) = self.cache.copies();
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
            copies: copies as u64,
            copy_bytes,
            assembly_queue: u64::try_from(m.assembly_queue.get()).unwrap_or(0),
        }
    }
}

fn chunk_digests(meta: &LayerMeta) -> HashSet<ChunkDigest> {
    meta.chunks.iter().map(|c| c.digest).collect()
}

//! The daemon's state and the operations of the control API: attach,
//! detach, list, stats, gc, verify, recording. Every operation is safe
//! against itself running concurrently; disk I/O and decoding run on
//! blocking threads ([`DaemonState::blocking`]), never on the async workers.

mod attach;
pub(crate) mod attached;
mod flat;
pub(crate) mod images;
mod pins;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuser::Notifier;
use lazy_cache::{CacheMetrics, ChunkCache, MetaStore};
use lazy_control::protocol::{LayerInfo, StatsInfo};
use lazy_control::{ControlError, ErrorKind, PrefetchMode};
use lazy_format::{ChunkDigest, LayerMeta, PrefetchRecord};
use lazy_image::fetch_lazy_manifest;
use lazy_oci::{Reference, RegistryClient};

use crate::control::errors::{cache_error, image_error, invalid_reference};
use crate::fuse::inode::{ROOT_INO, ino_of};
use crate::fuse::layer::AttachedLayer;
use crate::fuse::view::LayerTable;
use crate::recorder::Recorder;
use crate::source::{BlobSource, Stores};
use attached::{AttachList, AttachRecord};
use images::LocalImages;

/// Everything the control API works on.
pub(crate) struct DaemonState {
    /// Attached layers, shared with the FUSE adapter.
    table: Arc<LayerTable>,
    cache: ChunkCache,
    metrics: CacheMetrics,
    /// Cached layer metadata.
    meta_store: MetaStore,
    client: RegistryClient,
    /// HTTP stores by name.
    stores: Stores,
    /// Mountpoint (for paths in answers).
    mountpoint: PathBuf,
    /// Attached layers as persisted. Held across slot choice, install and
    /// save, so that concurrent attaches never share a slot.
    attached: Mutex<AttachList>,
    /// Kernel cache invalidation, once mounted.
    notifier: Mutex<Option<Notifier>>,
    attached_gauge: prometheus::IntGauge,
    /// Prefetch after attach unless the request says otherwise.
    prefetch_default: PrefetchMode,
    recorder: Arc<Recorder>,
    /// Images attached before, for attaches without the registry.
    images: LocalImages,
    /// Flat image views.
    flats: Mutex<flat::FlatList>,
    /// Background prefetches still running.
    prefetching: Arc<AtomicU64>,
}

/// A layer's metadata with the size of its blob.
pub(crate) type SizedMeta = (LayerMeta, u64);

/// A control operation's outcome, as told to the client.
pub(crate) type OpResult<T> = Result<T, ControlError>;

/// What the daemon is made of, for [`DaemonState::open`].
pub(crate) struct StateParts {
    /// The shared chunk cache.
    pub cache: ChunkCache,
    /// Its metrics.
    pub metrics: CacheMetrics,
    /// The registry client.
    pub client: RegistryClient,
    /// HTTP stores by name.
    pub stores: Stores,
    /// Gauge of attached layers.
    pub attached_gauge: prometheus::IntGauge,
    /// Default prefetch mode.
    pub prefetch_default: PrefetchMode,
}

impl DaemonState {
    /// Opens the persisted state under `cache_dir` (damaged files are set
    /// aside, never fatal) and re-attaches the layers attached before.
    pub fn open(cache_dir: &Path, mountpoint: &Path, parts: StateParts) -> std::io::Result<Self> {
        let meta_store = MetaStore::open(cache_dir).map_err(std::io::Error::other)?;
        let state = Self {
            table: Arc::new(LayerTable::default()),
            cache: parts.cache,
            metrics: parts.metrics,
            meta_store,
            client: parts.client,
            stores: parts.stores,
            mountpoint: mountpoint.to_owned(),
            attached: Mutex::new(AttachList::load(cache_dir)),
            notifier: Mutex::new(None),
            attached_gauge: parts.attached_gauge,
            prefetch_default: parts.prefetch_default,
            recorder: Arc::new(Recorder::default()),
            images: LocalImages::open(cache_dir)?,
            flats: Mutex::new(flat::FlatList::load(cache_dir)),
            prefetching: Arc::default(),
        };
        state.restore();
        state.restore_flats();
        Ok(state)
    }

    /// The attached layers, for the FUSE adapter.
    pub fn table(&self) -> Arc<LayerTable> {
        Arc::clone(&self.table)
    }

    /// The shared chunk cache.
    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// The read recorder, for the FUSE adapter.
    pub fn recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.recorder)
    }

    /// Hands over the kernel notifier once the session is mounted.
    pub fn set_notifier(&self, notifier: Notifier) {
        *self.notifier.lock().expect("notifier lock") = Some(notifier);
    }

    /// Runs `work` on a blocking thread: disk I/O, decoding and hashing
    /// must not hold an async worker. A panic in `work` is re-raised here.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&DaemonState) -> T + Send + 'static,
    ) -> T {
        let this = Arc::clone(self);
        // The caller's span (the request, the attach) follows the work.
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| work(&this))).await {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Waits (a few seconds at most) until the chunks fetched so far are
    /// stored, so that stats, gc and verify see them.
    pub async fn settled(&self) {
        let bound = std::time::Duration::from_secs(5);
        if tokio::time::timeout(bound, self.cache.settled())
            .await
            .is_err()
        {
            tracing::warn!("chunks still being stored after {} s", bound.as_secs());
        }
    }

    /// Re-attaches the persisted layers from cached metadata (at start).
    /// A record whose metadata is gone or whose repository does not parse
    /// is dropped with a log line; the rest is attached.
    fn restore(&self) {
        let mut list = self.attached.lock().expect("attach list lock");
        let mut kept = Vec::new();
        for record in std::mem::take(&mut list.records) {
            let meta = match self.meta_store.get(&record.digest) {
                Ok(Some((meta, size, _))) => (meta, size),
                other => {
                    tracing::warn!(digest = %record.digest, "cannot re-attach: metadata not cached ({other:?})");
                    continue;
                }
            };
            match self.install(&record, meta, &self.client) {
                Ok(()) => kept.push(record),
                Err(e) => tracing::warn!(digest = %record.digest, "cannot re-attach: {e}"),
            }
        }
        list.records = kept;
        if let Err(e) = list.save() {
            tracing::warn!("saving the attached-layer list: {e}");
        }
    }

    /// Puts one layer into the table (the caller holds the attach list).
    fn install(
        &self,
        record: &AttachRecord,
        (meta, blob_size): SizedMeta,
        client: &RegistryClient,
    ) -> OpResult<()> {
        let reference: Reference = record
            .repository
            .parse()
            .map_err(|e| invalid_reference(&record.repository, e))?;
        let store = self.stores.image_store(&reference, client);
        let source = Arc::new(BlobSource::new(store, record.digest.clone()));
        let pinned = record.pinned.then(|| chunk_digests(&meta));
        let layer = AttachedLayer::new(record.digest.clone(), record.slot, meta, blob_size, source);
        self.table.insert(Arc::new(layer)).map_err(|slot| {
            ControlError::new(
                ErrorKind::Internal,
                format!("slot {slot} of {} is taken", record.digest),
            )
        })?;
        if let Some(digests) = pinned {
            self.cache.pin(digests);
        }
        self.attached_gauge.set(self.table.len() as i64);
        Ok(())
    }

    /// Detaches a layer digest, or an image: each of its layers that no
    /// other attached image uses.
    pub fn detach(&self, target: &str) -> OpResult<()> {
        let mut list = self.attached.lock().expect("attach list lock");
        let by_digest = list.records.iter().any(|r| r.digest == target);
        let by_image = list
            .records
            .iter()
            .any(|r| r.images.iter().any(|i| i == target));
        if !by_digest && !by_image {
            return Err(ControlError::new(
                ErrorKind::NotFound,
                format!("nothing attached as {target}"),
            ));
        }
        let mut doomed = Vec::new();
        list.records.retain_mut(|r| {
            r.images.retain(|i| i != target);
            let gone = r.digest == target || r.images.is_empty();
            if gone {
                doomed.push(r.clone());
            } else if r.pinned_for.iter().any(|i| i == target) {
                self.unpin_record(r, target);
            }
            !gone
        });
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
        self.images.remove(target);
        self.prune_flats();
        self.attached_gauge.set(self.table.len() as i64);
        list.save().map_err(|e| {
            ControlError::new(
                ErrorKind::Internal,
                format!("saving the attached-layer list: {e}"),
            )
        })
    }

    /// Starts recording the chunk reads of an attached image's layers.
    pub async fn record_start(self: &Arc<Self>, image: &str) -> OpResult<()> {
        let reference: Reference = image.parse().map_err(|e| invalid_reference(image, e))?;
        let store = self.stores.image_store(&reference, &self.client);
        let manifest = fetch_lazy_manifest(&store, image)
            .await
            .map_err(|e| image_error(e).context(format_args!("recording {image}")))?;
        let layers: Vec<String> = manifest
            .manifest
            .layers()
            .iter()
            .map(|d| d.digest().to_string())
            .collect();
        if let Some(missing) = layers.iter().find(|d| self.table.by_digest(d).is_none()) {
            return Err(ControlError::new(
                ErrorKind::NotFound,
                format!("recording {image}: layer {missing} is not attached"),
            ));
        }
        let dropped = layers.clone();
        self.blocking(move |state| state.drop_page_caches(&dropped))
            .await;
        self.recorder
            .start(layers)
            .map_err(|message| ControlError::new(ErrorKind::Busy, message))
    }

    /// Ends the recording and returns it.
    pub fn record_stop(&self) -> OpResult<PrefetchRecord> {
        self.recorder
            .stop()
            .ok_or_else(|| ControlError::new(ErrorKind::InvalidRequest, "no recording is running"))
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
            .filter_map(|r| self.info_of(r))
            .collect()
    }

    fn info_of(&self, record: &AttachRecord) -> Option<LayerInfo> {
        let layer = self.table.by_digest(&record.digest)?;
        let stats = layer.meta.stats();
        Some(LayerInfo {
            digest: record.digest.clone(),
            image: record.images.first().cloned().unwrap_or_default(),
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
            attached_layers: self.table.len() as u64,
            copies: copies as u64,
            copy_bytes,
            assembly_queue: u64::try_from(m.assembly_queue.get()).unwrap_or(0),
            fetch_micros: whole_micros(m.fetch_seconds.get_sample_sum()),
            prefetching: self.prefetching.load(Ordering::Relaxed),
        }
    }

    /// Evicts unused chunks down to `target` bytes: (chunks, bytes) removed.
    pub fn gc(&self, target: u64) -> (u64, u64) {
        let (chunks, bytes) = self.cache.gc(target);
        (chunks as u64, bytes)
    }

    /// Re-hashes the cache: (checked, corrupt removed).
    pub fn verify(&self) -> (u64, u64) {
        let (checked, bad) = self.cache.verify();
        (checked as u64, bad.len() as u64)
    }

    /// Turns a cache failure into a control error naming `what`.
    fn cache_failure(what: &str) -> impl Fn(lazy_cache::CacheError) -> ControlError + '_ {
        move |e| cache_error(&e).context(what)
    }
}

fn chunk_digests(meta: &LayerMeta) -> HashSet<ChunkDigest> {
    meta.chunks.iter().map(|c| c.digest).collect()
}

/// Whole microseconds of `seconds` (a sum of durations: never negative).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole_micros(seconds: f64) -> u64 {
    // `as` saturates: NaN is 0, beyond u64 is u64::MAX.
    (seconds * 1e6) as u64
}

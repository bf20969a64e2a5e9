//! The gRPC face: containerd's snapshots API (`containerd-snapshots`) over
//! the [`SnapshotStore`], [`SnapshotDirs`] and, for lazy layers, lazyfsd.
//! Thin: each call checks, delegates, and maps [`StoreError`] to a status
//! in one place ([`status`]); file work runs on blocking threads.
//!
//! A lazy layer arrives as a `Prepare` carrying the target chain ID
//! (`containerd.io/snapshot.ref`), the image reference and the layer digest
//! (`containerd.io/snapshot/cri.image-ref`, `…/cri.layer-digest`). The
//! layer is attached in lazyfsd, committed under the target name as a
//! remote snapshot whose content is lazyfsd's layer directory, and the
//! answer is AlreadyExists: containerd then downloads nothing for it.
//! When lazyfsd is down, or the layer is known to be lazy (`lazyctl pull
//! --containerd` says so) and cannot be attached, Prepare fails with
//! lazyfsd's reason and creates nothing. Any other layer lazyfsd declines
//! (not lazy: CRI labels every layer) becomes an ordinary snapshot that
//! containerd fills by applying the layer.

// The trait's error type is tonic's `Status` (176 bytes); boxing it would
// only move the allocation.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use containerd_snapshots::api::types::Mount;
use containerd_snapshots::tonic::Status;
use containerd_snapshots::{Info, Kind, Snapshotter, Usage};
use lazy_control::snapshot_labels::{IMAGE, LAYER, LAZY_LAYER, REMOTE, SNAPSHOTTER_PREFIX, TARGET};
use lazy_control::{ClientError, ControlClient, ErrorKind};

use crate::filters::{Filter, any_matches};
use crate::mounts::{MountSpec, SnapshotDirs};
use crate::store::{DiskUsage, SnapshotKind, SnapshotRecord, SnapshotStore, StoreError};
use crate::usage::disk_usage;

/// The snapshotter.
pub struct LazySnapshotter {
    store: Arc<SnapshotStore>,
    dirs: SnapshotDirs,
    /// lazyfsd, for remote snapshots; `None`: every layer is applied.
    daemon: Option<ControlClient>,
}

/// The one mapping from metadata errors to gRPC statuses (containerd
/// turns these codes back into its errdefs).
pub fn status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(_) => Status::not_found(e.to_string()),
        StoreError::AlreadyExists(_) => Status::already_exists(e.to_string()),
        StoreError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
        StoreError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
        StoreError::Save { .. } => Status::internal(e.to_string()),
    }
}

fn io_status(what: &str, e: std::io::Error) -> Status {
    Status::internal(format!("{what}: {e}"))
}

impl LazySnapshotter {
    /// A snapshotter over `store` and `dirs`, with lazyfsd at `daemon`.
    pub fn new(store: SnapshotStore, dirs: SnapshotDirs, daemon: Option<ControlClient>) -> Self {
        Self {
            store: Arc::new(store),
            dirs,
            daemon,
        }
    }

    /// Creates an active snapshot or a view and its directories.
    async fn create(
        &self,
        kind: SnapshotKind,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        let parent = (!parent.is_empty()).then_some(parent);
        let record = self
            .store
            .create(kind, key, parent, labels.into_iter().collect())
            .map_err(status)?;
        let dir = self.dirs.dir(record.id);
        let made = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(dir.join("fs"))?;
            std::fs::create_dir_all(dir.join("work"))
        })
        .await
        .expect("mkdir task");
        if let Err(e) = made {
            let _ = self.store.remove(key);
            return Err(io_status("creating the snapshot's directories", e));
        }
        self.mounts_of(&record)
    }

    fn mounts_of(&self, record: &SnapshotRecord) -> Result<Vec<Mount>, Status> {
        let parents = self.store.parents(&record.key).map_err(status)?;
        Ok(self
            .dirs
            .mounts(record, &parents)
            .into_iter()
            .map(to_mount)
            .collect())
    }

    /// Attaches the layer in lazyfsd and commits it as `target`. `Ok`
    /// means the remote snapshot exists (made now or before).
    async fn prepare_remote(
        &self,
        key: &str,
        parent: &str,
        target: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), NotRemote> {
        let daemon = self
            .daemon
            .clone()
            .ok_or(NotRemote::Apply("no lazyfsd configured".into()))?;
        let (Some(image), Some(layer)) = (labels.get(IMAGE), labels.get(LAYER)) else {
            return Err(NotRemote::Apply(format!("no {IMAGE} and {LAYER} labels")));
        };
        if self.store.get(target).is_ok() {
            return Ok(());
        }
        let (image, layer) = (image.clone(), layer.clone());
        let attached =
            tokio::task::spawn_blocking(move || daemon.attach_layer(&image, &layer, None))
                .await
                .expect("attach task")
                .map_err(|e| NotRemote::from_attach(e, labels.contains_key(LAZY_LAYER)))?;
        let mut committed: BTreeMap<String, String> = labels.clone().into_iter().collect();
        committed.insert(REMOTE.into(), "remote snapshot".into());
        let parent = (!parent.is_empty()).then_some(parent);
        self.store
            .create(SnapshotKind::Active, key, parent, BTreeMap::new())
            .map_err(|e| NotRemote::Failed(status(e)))?;
        let remote = Some(PathBuf::from(attached.path));
        match self
            .store
            .commit(target, key, committed, DiskUsage::default(), remote)
        {
            Ok(_) => Ok(()),
            Err(StoreError::AlreadyExists(_)) => {
                let _ = self.store.remove(key);
                Ok(())
            }
            Err(e) => {
                let _ = self.store.remove(key);
                Err(NotRemote::Failed(status(e)))
            }
        }
    }

    /// Detaches the image of a removed remote snapshot from lazyfsd once
    /// no remote snapshot of that image is left: lazyfsd then drops the
    /// layers no other image uses (what `lazyctl pull` attached with the
    /// image, and what this snapshotter attached layer by layer under the
    /// image's name). Best effort: a layer lazyfsd keeps only costs its
    /// metadata.
    async fn detach_unused(&self, removed: &SnapshotRecord) {
        let (Some(daemon), Some(image)) = (self.daemon.clone(), removed.labels.get(IMAGE)) else {
            return;
        };
        let in_use = self
            .store
            .all()
            .iter()
            .any(|r| r.remote.is_some() && r.labels.get(IMAGE) == Some(image));
        if in_use {
            return;
        }
        let name = image.clone();
        let detached = tokio::task::spawn_blocking(move || daemon.detach(&name))
            .await
            .expect("detach task");
        match detached {
            Ok(()) => tracing::info!(%image, "detached from lazyfsd"),
            Err(e) => tracing::warn!(%image, "leaving its layers attached: {e}"),
        }
    }
}

/// Removes the directories no snapshot record names: left by a crash
/// between a record's removal and its directory's. The directories are
/// listed before the records: a record is made before its directory, so a
/// directory being created now always has its record in the list.
fn remove_orphan_dirs(store: &SnapshotStore, dirs: &SnapshotDirs) -> std::io::Result<usize> {
    let found = dirs.list()?;
    let known: std::collections::HashSet<u64> = store.all().into_iter().map(|r| r.id).collect();
    let mut removed = 0;
    for (id, path) in found {
        if !known.contains(&id) {
            std::fs::remove_dir_all(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Why a layer did not become a remote snapshot.
#[derive(Debug)]
enum NotRemote {
    /// Make an ordinary snapshot: containerd applies the layer.
    Apply(String),
    /// Fail the Prepare with this status.
    Failed(Status),
}

impl NotRemote {
    /// lazyfsd down fails the call (containerd could not apply a lazy
    /// layer anyway); so does any failure of a layer known to be lazy.
    /// Otherwise the layer may simply not be lazy: apply it.
    fn from_attach(e: ClientError, known_lazy: bool) -> Self {
        let kind = e.kind();
        let not_lazy = matches!(kind, ErrorKind::NotLazy);
        let daemon_down = matches!(
            e,
            ClientError::NotRunning { .. } | ClientError::Protocol { .. }
        );
        if daemon_down || (known_lazy && !not_lazy) {
            let code = containerd_snapshots::tonic::Code::from(kind.mapping().grpc_code);
            Self::Failed(Status::new(code, format!("{SNAPSHOTTER_PREFIX} {e}")))
        } else {
            Self::Apply(e.to_string())
        }
    }
}

fn to_mount(spec: MountSpec) -> Mount {
    Mount {
        r#type: spec.kind,
        source: spec.source,
        target: String::new(),
        options: spec.options,
    }
}

fn to_info(record: SnapshotRecord) -> Info {
    let time = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
    Info {
        kind: match record.kind {
            SnapshotKind::View => Kind::View,
            SnapshotKind::Active => Kind::Active,
            SnapshotKind::Committed => Kind::Committed,
        },
        name: record.key,
        parent: record.parent.unwrap_or_default(),
        labels: record.labels.into_iter().collect(),
        created_at: time(record.created_ns),
        updated_at: time(record.updated_ns),
    }
}

fn to_usage(usage: DiskUsage) -> Usage {
    Usage {
        size: i64::try_from(usage.size).unwrap_or(i64::MAX),
        inodes: i64::try_from(usage.inodes).unwrap_or(i64::MAX),
    }
}

#[containerd_snapshots::tonic::async_trait]
impl Snapshotter for LazySnapshotter {
    type Error = Status;

    async fn stat(&self, key: String) -> Result<Info, Status> {
        self.store.get(&key).map(to_info).map_err(status)
    }

    async fn update(&self, info: Info, fieldpaths: Option<Vec<String>>) -> Result<Info, Status> {
        let labels = info.labels.into_iter().collect();
        let paths = fieldpaths.unwrap_or_default();
        self.store
            .update_labels(&info.name, labels, &paths)
            .map(to_info)
            .map_err(status)
    }

    async fn usage(&self, key: String) -> Result<Usage, Status> {
        let record = self.store.get(&key).map_err(status)?;
        if let Some(usage) = record.usage {
            return Ok(to_usage(usage));
        }
        let fs = self.dirs.content(&record);
        let usage = tokio::task::spawn_blocking(move || disk_usage(&fs))
            .await
            .expect("du task")
            .map_err(|e| io_status("measuring usage", e))?;
        Ok(to_usage(usage))
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, Status> {
        let record = self.store.get(&key).map_err(status)?;
        self.mounts_of(&record)
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        if let Some(target) = labels.get(TARGET).cloned() {
            match self.prepare_remote(&key, &parent, &target, &labels).await {
                Ok(()) => {
                    tracing::info!(%target, "remote snapshot of a lazy layer");
                    return Err(Status::already_exists(format!(
                        "target snapshot {target:?}"
                    )));
                }
                Err(NotRemote::Apply(why)) => {
                    tracing::info!(%target, "applying the layer: not remote: {why}");
                }
                Err(NotRemote::Failed(status)) => {
                    tracing::warn!(%target, "prepare failed: {}", status.message());
                    return Err(status);
                }
            }
        }
        self.create(SnapshotKind::Active, &key, &parent, labels)
            .await
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        self.create(SnapshotKind::View, &key, &parent, labels).await
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        let record = self.store.get(&key).map_err(status)?;
        let fs = self.dirs.content(&record);
        let usage = tokio::task::spawn_blocking(move || disk_usage(&fs))
            .await
            .expect("du task")
            .map_err(|e| io_status("measuring usage", e))?;
        self.store
            .commit(&name, &key, labels.into_iter().collect(), usage, None)
            .map(drop)
            .map_err(status)
    }

    async fn remove(&self, key: String) -> Result<(), Status> {
        let record = self.store.remove(&key).map_err(status)?;
        if record.remote.is_some() {
            self.detach_unused(&record).await;
        }
        let dir = self.dirs.dir(record.id);
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .expect("remove task");
        removed.map_err(|e| io_status("removing the snapshot's directory", e))
    }

    async fn clear(&self) -> Result<(), Status> {
        let (store, dirs) = (Arc::clone(&self.store), self.dirs.clone());
        let removed = tokio::task::spawn_blocking(move || remove_orphan_dirs(&store, &dirs))
            .await
            .expect("cleanup task")
            .map_err(|e| io_status("removing unused snapshot directories", e))?;
        tracing::info!(removed, "cleanup");
        Ok(())
    }

    type InfoStream = tokio_stream::Iter<std::vec::IntoIter<Result<Info, Status>>>;

    async fn list(
        &self,
        _snapshotter: String,
        filters: Vec<String>,
    ) -> Result<Self::InfoStream, Status> {
        let filters = filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let infos: Vec<Result<Info, Status>> = self
            .store
            .all()
            .into_iter()
            .filter(|r| any_matches(&filters, r))
            .map(|r| Ok(to_info(r)))
            .collect();
        Ok(tokio_stream::iter(infos))
    }
}

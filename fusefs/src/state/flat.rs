//! Flat image views (`<mount>/images/<manifest digest>/`): an attached
//! image's layers merged into one read-only tree. The list of views is
//! kept in `<cache>/flat.json`, slot included, so that a restarted daemon
//! shows them again under the same inode numbers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lazy_control::{ControlError, ErrorKind};
use lazy_statefile::{Durability, set_aside, write_atomic};
use serde::{Deserialize, Serialize};

use super::{DaemonState, OpResult};
use crate::fuse::flat::merge;
use crate::fuse::inode::{FLAT_SLOT_BASE, IMAGES_DIR};
use crate::fuse::layer::AttachedLayer;

/// One flat view, as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FlatRecord {
    /// The image, as attached.
    pub image: String,
    /// Its manifest digest: the view's directory name.
    pub name: String,
    /// Its inode slot.
    pub slot: u32,
}

/// The persisted list.
#[derive(Debug)]
pub(crate) struct FlatList {
    path: PathBuf,
    pub records: Vec<FlatRecord>,
}

impl FlatList {
    /// Loads `<cache>/flat.json`; a damaged file is set aside.
    pub fn load(cache_dir: &Path) -> Self {
        let path = cache_dir.join("flat.json");
        let records = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                set_aside(&path, &format_args!("not a flat view list: {e}"));
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Self { path, records }
    }

    fn save(&self) -> OpResult<()> {
        let bytes = serde_json::to_vec_pretty(&self.records).expect("records serialize");
        write_atomic(&self.path, &bytes, Durability::Synced).map_err(|e| {
            ControlError::new(
                ErrorKind::Internal,
                format!("saving the flat view list: {e}"),
            )
        })
    }

    fn next_slot(&self) -> u32 {
        let used = self.records.iter().map(|r| r.slot).max();
        used.map_or(FLAT_SLOT_BASE, |s| s + 1)
    }
}

impl DaemonState {
    /// Shows attached `image` merged at `<mount>/images/<manifest digest>`;
    /// returns that directory.
    pub fn flat_view(&self, image: &str) -> OpResult<String> {
        let mut list = self.flats.lock().expect("flat list lock");
        let existing = list.records.iter().find(|r| r.image == image).cloned();
        let slot = existing
            .as_ref()
            .map_or_else(|| list.next_slot(), |r| r.slot);
        let view = self.build_flat(image, slot)?;
        let name = view.digest.clone();
        self.table.insert_flat(Arc::new(view));
        list.records.retain(|r| r.image != image);
        list.records.push(FlatRecord {
            image: image.to_owned(),
            name: name.clone(),
            slot,
        });
        list.save()?;
        Ok(self
            .mountpoint
            .join("images")
            .join(name)
            .display()
            .to_string())
    }

    /// Merges the attached layers of `image` into a view in `slot`.
    fn build_flat(&self, image: &str, slot: u32) -> OpResult<AttachedLayer> {
        let not_attached = || {
            ControlError::new(
                ErrorKind::NotFound,
                format!("{image} is not attached (lazyctl attach {image})"),
            )
        };
        let record = self.images.get(image).ok_or_else(not_attached)?;
        let layers: Vec<Arc<AttachedLayer>> = record
            .layers
            .iter()
            .map(|d| self.table.by_digest(d))
            .collect::<Option<_>>()
            .ok_or_else(not_attached)?;
        let size = layers.iter().map(|l| l.blob_size).sum();
        let (meta, source) = merge(&layers);
        Ok(AttachedLayer::new(
            record.manifest_digest,
            slot,
            meta,
            size,
            Arc::new(source),
        ))
    }

    /// Drops the views of images no longer attached whole (after a
    /// detach), and tells the kernel their names are gone.
    pub(super) fn prune_flats(&self) {
        let mut list = self.flats.lock().expect("flat list lock");
        let before = list.records.len();
        list.records.retain(|r| {
            let whole = self.images.get(&r.image).is_some_and(|i| {
                i.manifest_digest == r.name
                    && i.layers.iter().all(|d| self.table.by_digest(d).is_some())
            });
            if !whole {
                self.table.remove_flats(|v| v.slot == r.slot);
                if let Some(notifier) = self.notifier.lock().expect("notifier lock").as_ref() {
                    let parent = fuser::INodeNo(crate::fuse::inode::IMAGES_INO);
                    let _ = notifier.inval_entry(parent, std::ffi::OsStr::new(&r.name));
                }
            }
            whole
        });
        if list.records.len() == before {
            return;
        }
        if let Err(e) = list.save() {
            tracing::warn!("{e}");
        }
        if list.records.is_empty()
            && let Some(notifier) = self.notifier.lock().expect("notifier lock").as_ref()
        {
            let root = fuser::INodeNo(crate::fuse::inode::ROOT_INO);
            let name = std::os::unix::ffi::OsStrExt::from_bytes(IMAGES_DIR);
            let _ = notifier.inval_entry(root, name);
        }
    }

    /// Shows the remembered views again (at start, after the layers).
    pub(super) fn restore_flats(&self) {
        let records = self.flats.lock().expect("flat list lock").records.clone();
        for record in records {
            match self.build_flat(&record.image, record.slot) {
                Ok(view) => self.table.insert_flat(Arc::new(view)),
                Err(e) => {
                    tracing::warn!(image = %record.image, "cannot show the flat view again: {e}")
                }
            }
        }
        self.prune_flats();
    }
}

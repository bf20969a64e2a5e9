//! The snapshotter's metadata: every snapshot by key, with its kind,
//! parent, labels, times, usage and id (which names its directory). It is
//! held in memory and written whole, atomically and durably, on every
//! change (`<root>/metadata.json`), so it survives restarts and crashes; a
//! damaged file is set aside and the store starts empty, with a log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use lazy_statefile::{Durability, set_aside, write_atomic};
use serde::{Deserialize, Serialize};

/// What a snapshot is, as containerd sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Read-only view of a committed parent.
    View,
    /// Writable, to be committed or removed.
    Active,
    /// Immutable; may be the parent of others.
    Committed,
}

impl SnapshotKind {
    /// The name used by filters (`kind==committed`).
    pub fn name(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Active => "active",
            Self::Committed => "committed",
        }
    }
}

/// Disk used by a snapshot itself (not its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Bytes.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Names the snapshot's directory (`<root>/snapshots/<id>`).
    pub id: u64,
    /// The key (active, view) or name (committed) containerd uses.
    pub key: String,
    /// Kind.
    pub kind: SnapshotKind,
    /// The parent's key (a committed snapshot), if any.
    pub parent: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time, ns since the epoch.
    pub created_ns: u64,
    /// Last change, ns since the epoch.
    pub updated_ns: u64,
    /// Usage, recorded at commit.
    pub usage: Option<DiskUsage>,
    /// For a remote snapshot (a lazy layer): lazyfsd's directory of the
    /// layer, its content; nothing lives in the snapshot's own directory.
    pub remote: Option<PathBuf>,
}

/// Why a metadata operation failed; each maps to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No snapshot with this key.
    #[error("snapshot {0} does not exist")]
    NotFound(String),
    /// The key or name is taken.
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    /// The request is malformed (e.g. a parent that is not committed).
    #[error("{0}")]
    InvalidArgument(String),
    /// The snapshot is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The metadata file could not be written.
    #[error("saving {path}: {source}")]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    next_id: u64,
    snapshots: BTreeMap<String, SnapshotRecord>,
}

/// All snapshots, persisted.
#[derive(Debug)]
pub struct SnapshotStore {
    path: PathBuf,
    metadata: Mutex<Metadata>,
}

/// Now, ns since the epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl SnapshotStore {
    /// Opens `<root>/metadata.json` (empty when absent; set aside when damaged).
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let path = root.join("metadata.json");
        let metadata = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                set_aside(&path, &format_args!("not snapshot metadata: {e}"));
                Metadata::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Metadata::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            metadata: Mutex::new(metadata),
        })
    }

    /// Runs `change` on the metadata and saves it if `change` succeeds.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Metadata) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut metadata = self.metadata.lock().expect("metadata lock");
        let mut edited = Metadata {
            next_id: metadata.next_id,
            snapshots: metadata.snapshots.clone(),
        };
        let value = change(&mut edited)?;
        let bytes = serde_json::to_vec(&edited).expect("metadata serializes");
        write_atomic(&self.path, &bytes, Durability::Synced).map_err(|source| {
            StoreError::Save {
                path: self.path.clone(),
                source,
            }
        })?;
        *metadata = edited;
        Ok(value)
    }

    /// Creates an active snapshot or a view on `parent` (committed).
    pub fn create(
        &self,
        kind: SnapshotKind,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<SnapshotRecord, StoreError> {
        if kind == SnapshotKind::Committed {
            return Err(StoreError::InvalidArgument(format!(
                "{key}: only active snapshots and views are created"
            )));
        }
        self.change(|m| {
            if m.snapshots.contains_key(key) {
                return Err(StoreError::AlreadyExists(key.to_owned()));
            }
            if let Some(parent) = parent {
                match m.snapshots.get(parent) {
                    None => return Err(StoreError::NotFound(parent.to_owned())),
                    Some(p) if p.kind != SnapshotKind::Committed => {
                        return Err(StoreError::InvalidArgument(format!(
                            "parent {parent} is not committed"
                        )));
                    }
                    Some(_) => {}
                }
            }
            m.next_id += 1;
            let now = now_ns();
            let record = SnapshotRecord {
                id: m.next_id,
                key: key.to_owned(),
                kind,
                parent: parent.map(str::to_owned),
                labels,
                created_ns: now,
                updated_ns: now,
                usage: None,
                remote: None,
            };
            m.snapshots.insert(key.to_owned(), record.clone());
            Ok(record)
        })
    }

    /// Commits active snapshot `key` as `name` (labels replace the key's
    /// when given); returns the committed record.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
        usage: DiskUsage,
        remote: Option<PathBuf>,
    ) -> Result<SnapshotRecord, StoreError> {
        self.change(|m| {
            let active = m
                .snapshots
                .get(key)
                .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
            if active.kind != SnapshotKind::Active {
                return Err(StoreError::FailedPrecondition(format!(
                    "snapshot {key} is a {}, not active: only active snapshots are committed",
                    active.kind.name()
                )));
            }
            if m.snapshots.contains_key(name) {
                return Err(StoreError::AlreadyExists(name.to_owned()));
            }
            let mut record = m.snapshots.remove(key).expect("checked above");
            record.key = name.to_owned();
            record.kind = SnapshotKind::Committed;
            if !labels.is_empty() {
                record.labels = labels;
            }
            record.updated_ns = now_ns();
            record.usage = Some(usage);
            record.remote = remote;
            m.snapshots.insert(name.to_owned(), record.clone());
            Ok(record)
        })
    }

    /// Removes a snapshot that no other snapshot has as parent.
    pub fn remove(&self, key: &str) -> Result<SnapshotRecord, StoreError> {
        self.change(|m| {
            if !m.snapshots.contains_key(key) {
                return Err(StoreError::NotFound(key.to_owned()));
            }
            if let Some(child) = m
                .snapshots
                .values()
                .find(|s| s.parent.as_deref() == Some(key))
            {
                return Err(StoreError::FailedPrecondition(format!(
                    "cannot remove snapshot {key}: snapshot {} is its child",
                    child.key
                )));
            }
            Ok(m.snapshots.remove(key).expect("checked above"))
        })
    }

    /// Replaces labels: all of them, or only `labels.<name>` field paths.
    pub fn update_labels(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
        fieldpaths: &[String],
    ) -> Result<SnapshotRecord, StoreError> {
        self.change(|m| {
            let record = m
                .snapshots
                .get_mut(key)
                .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
            if fieldpaths.is_empty() || fieldpaths.iter().any(|p| p == "labels") {
                record.labels = labels;
            } else {
                for path in fieldpaths {
                    let name = path.strip_prefix("labels.").ok_or_else(|| {
                        StoreError::InvalidArgument(format!("cannot update field {path:?}"))
                    })?;
                    match labels.get(name) {
                        Some(value) => record.labels.insert(name.to_owned(), value.clone()),
                        None => record.labels.remove(name),
                    };
                }
            }
            record.updated_ns = now_ns();
            Ok(record.clone())
        })
    }

    /// The snapshot `key`.
    pub fn get(&self, key: &str) -> Result<SnapshotRecord, StoreError> {
        let metadata = self.metadata.lock().expect("metadata lock");
        metadata
            .snapshots
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))
    }

    /// `key`'s ancestors, nearest first.
    pub fn parents(&self, key: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        let metadata = self.metadata.lock().expect("metadata lock");
        let mut chain = Vec::new();
        let mut next = metadata
            .snapshots
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?
            .parent
            .clone();
        while let Some(parent) = next {
            let record = metadata
                .snapshots
                .get(&parent)
                .ok_or_else(|| StoreError::NotFound(parent.clone()))?;
            next = record.parent.clone();
            chain.push(record.clone());
        }
        Ok(chain)
    }

    /// Every snapshot, by key.
    pub fn all(&self) -> Vec<SnapshotRecord> {
        let metadata = self.metadata.lock().expect("metadata lock");
        metadata.snapshots.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn lifecycle_follows_containerd() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let a = store
            .create(SnapshotKind::Active, "a", None, BTreeMap::new())
            .unwrap();
        assert!(matches!(
            store.create(SnapshotKind::Active, "a", None, BTreeMap::new()),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(
            matches!(
                store.create(SnapshotKind::Active, "b", Some("a"), BTreeMap::new()),
                Err(StoreError::InvalidArgument(_))
            ),
            "an active parent is refused"
        );
        assert!(matches!(
            store.create(SnapshotKind::Active, "b", Some("nope"), BTreeMap::new()),
            Err(StoreError::NotFound(_))
        ));
        let usage = DiskUsage {
            size: 10,
            inodes: 2,
        };
        let base = store
            .commit("base", "a", labels(&[("x", "1")]), usage, None)
            .unwrap();
        assert_eq!((base.id, base.kind), (a.id, SnapshotKind::Committed));
        assert!(matches!(store.get("a"), Err(StoreError::NotFound(_))));
        store
            .create(SnapshotKind::View, "v", Some("base"), BTreeMap::new())
            .unwrap();
        assert!(
            matches!(
                store.commit("v2", "v", BTreeMap::new(), usage, None),
                Err(StoreError::FailedPrecondition(_))
            ),
            "a view cannot be committed"
        );
        store
            .create(SnapshotKind::Active, "c", Some("base"), BTreeMap::new())
            .unwrap();
        assert_eq!(store.parents("c").unwrap()[0].key, "base");
        assert!(matches!(
            store.remove("base"),
            Err(StoreError::FailedPrecondition(_))
        ));
        store.remove("c").unwrap();
        store.remove("v").unwrap();
        store.remove("base").unwrap();
        assert!(store.all().is_empty());
    }

    #[test]
    fn survives_a_restart_and_sets_damage_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SnapshotStore::open(dir.path()).unwrap();
            store
                .create(SnapshotKind::Active, "a", None, labels(&[("k", "v")]))
                .unwrap();
            store
                .update_labels("a", labels(&[("k", "w"), ("n", "1")]), &["labels.n".into()])
                .unwrap();
        }
        let store = SnapshotStore::open(dir.path()).unwrap();
        let a = store.get("a").unwrap();
        assert_eq!(
            a.labels,
            labels(&[("k", "v"), ("n", "1")]),
            "only labels.n changed"
        );
        let b = store
            .create(SnapshotKind::Active, "b", None, BTreeMap::new())
            .unwrap();
        assert!(b.id > a.id, "ids are never reused");
        drop(store);
        std::fs::write(dir.path().join("metadata.json"), b"{broken").unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        assert!(store.all().is_empty());
        let aside = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(aside, 1, "the damaged file is kept aside");
    }
}

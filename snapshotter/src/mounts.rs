//! The mounts containerd gets for a snapshot, as the overlay snapshotter
//! makes them: a bind mount when there is nothing to stack, an overlay of
//! the parents (nearest first) under the snapshot's own upper dir
//! otherwise; views are read-only. A remote snapshot's content is its
//! lazyfsd layer directory.

use std::path::{Path, PathBuf};

use lazy_runtime::overlay::lowerdir_option;

use crate::store::{SnapshotKind, SnapshotRecord};

/// A mount for containerd (`containerd.types.Mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Filesystem type: `bind` or `overlay`.
    pub kind: String,
    /// Source.
    pub source: String,
    /// Options.
    pub options: Vec<String>,
}

/// Where snapshots keep their files: `<root>/snapshots/<id>/{fs,work}`.
#[derive(Debug, Clone)]
pub struct SnapshotDirs {
    root: PathBuf,
}

impl SnapshotDirs {
    /// Snapshots under `<root>/snapshots`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.join("snapshots"),
        }
    }

    /// A snapshot's own directory.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Every snapshot directory there is, with its ID.
    pub fn list(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                found.push((id, entry.path()));
            }
        }
        Ok(found)
    }

    /// A snapshot's content: its lazy layer, or its `fs` dir.
    pub fn content(&self, record: &SnapshotRecord) -> PathBuf {
        match &record.remote {
            Some(layer) => layer.clone(),
            None => self.dir(record.id).join("fs"),
        }
    }

    /// The mounts of `record`, whose ancestors are `parents` (nearest first).
    pub fn mounts(&self, record: &SnapshotRecord, parents: &[SnapshotRecord]) -> Vec<MountSpec> {
        let bind = |path: PathBuf, mode: &str| MountSpec {
            kind: "bind".into(),
            source: path.display().to_string(),
            options: vec![mode.into(), "rbind".into()],
        };
        let lowers: Vec<PathBuf> = parents.iter().map(|p| self.content(p)).collect();
        match (record.kind, lowers.as_slice()) {
            (SnapshotKind::Active, []) => vec![bind(self.content(record), "rw")],
            (SnapshotKind::Active, _) => {
                let dir = self.dir(record.id);
                vec![MountSpec {
                    kind: "overlay".into(),
                    source: "overlay".into(),
                    options: vec![
                        format!("workdir={}", dir.join("work").display()),
                        format!("upperdir={}", dir.join("fs").display()),
                        format!("lowerdir={}", lowerdir_option(&lowers)),
                    ],
                }]
            }
            (_, []) => vec![bind(self.content(record), "ro")],
            (_, [only]) => vec![bind(only.clone(), "ro")],
            (_, _) => vec![MountSpec {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", lowerdir_option(&lowers))],
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, kind: SnapshotKind, remote: Option<&str>) -> SnapshotRecord {
        SnapshotRecord {
            id,
            key: format!("k{id}"),
            kind,
            parent: None,
            labels: Default::default(),
            created_ns: 0,
            updated_ns: 0,
            usage: None,
            remote: remote.map(PathBuf::from),
        }
    }

    #[test]
    fn mounts_follow_the_overlay_snapshotter() {
        let dirs = SnapshotDirs::new(Path::new("/s"));
        let active = record(3, SnapshotKind::Active, None);
        assert_eq!(
            dirs.mounts(&active, &[]),
            [MountSpec {
                kind: "bind".into(),
                source: "/s/snapshots/3/fs".into(),
                options: vec!["rw".into(), "rbind".into()]
            }]
        );
        let lazy = record(2, SnapshotKind::Committed, Some("/mnt/sha256:bb"));
        let plain = record(1, SnapshotKind::Committed, None);
        let parents = [lazy, plain];
        let overlay = &dirs.mounts(&active, &parents)[0];
        assert_eq!(overlay.kind, "overlay");
        assert_eq!(
            overlay.options,
            [
                "workdir=/s/snapshots/3/work",
                "upperdir=/s/snapshots/3/fs",
                "lowerdir=/mnt/sha256\\:bb:/s/snapshots/1/fs"
            ]
        );
        let view = record(4, SnapshotKind::View, None);
        assert_eq!(
            dirs.mounts(&view, &parents[..1])[0].source,
            "/mnt/sha256:bb"
        );
        assert_eq!(
            dirs.mounts(&view, &parents[..1])[0].options,
            ["ro", "rbind"]
        );
        assert_eq!(
            dirs.mounts(&view, &parents)[0].options,
            ["lowerdir=/mnt/sha256\\:bb:/s/snapshots/1/fs"],
            "a view of several layers is an overlay without upper dir: read-only"
        );
    }
}

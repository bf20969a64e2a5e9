//! The entries of one layer as a tar stream defines them: later entries
//! replace earlier ones, whiteouts and opaque markers become entry kinds, and
//! nothing may be written beneath a non-directory.

use std::collections::BTreeMap;

use lazy_format::{Entry, EntryKind, parent_of};

/// Why an entry cannot join the tree.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TreeError {
    /// An ancestor of the entry is a symlink or another non-directory.
    BeneathNonDirectory { ancestor: Vec<u8> },
    /// A hardlink whose target is not a non-directory entry of this layer.
    BadHardlinkTarget,
}

/// Entries of one layer keyed by path, in the order the format stores them.
#[derive(Debug, Default)]
pub(crate) struct LayerTree {
    entries: BTreeMap<Vec<u8>, Entry>,
}

impl LayerTree {
    /// Adds or replaces an entry (tar semantics: the last one wins).
    pub(crate) fn insert(&mut self, mut entry: Entry) -> Result<(), TreeError> {
        self.check_ancestors(&entry.path)?;
        if let EntryKind::Hardlink { target } = &entry.kind {
            match self.entries.get(target).map(|t| &t.kind) {
                Some(EntryKind::Dir { .. } | EntryKind::Whiteout | EntryKind::Hardlink { .. })
                | None => {
                    return Err(TreeError::BadHardlinkTarget);
                }
                Some(_) => {}
            }
        }
        match self.entries.get(&entry.path).map(|e| &e.kind) {
            // A directory named again keeps what markers said about it, and a
            // directory recreated over its own whiteout hides the lower one.
            Some(EntryKind::Dir { opaque }) if matches!(entry.kind, EntryKind::Dir { .. }) => {
                entry.kind = EntryKind::Dir { opaque: *opaque };
            }
            Some(EntryKind::Whiteout) if matches!(entry.kind, EntryKind::Dir { .. }) => {
                entry.kind = EntryKind::Dir { opaque: true };
            }
            Some(EntryKind::Dir { .. }) => self.remove_descendants(&entry.path),
            _ => {}
        }
        self.entries.insert(entry.path.clone(), entry);
        Ok(())
    }

    /// Records `.wh.NAME`: hides `path` of lower layers, unless this layer
    /// itself has an entry there (which replaces the lower one anyway).
    pub(crate) fn whiteout(&mut self, path: Vec<u8>, template: Entry) -> Result<(), TreeError> {
        self.check_ancestors(&path)?;
        match self.entries.get_mut(&path) {
            Some(Entry {
                kind: EntryKind::Dir { opaque },
                ..
            }) => *opaque = true,
            Some(_) => {}
            None => {
                let entry = Entry {
                    path: path.clone(),
                    kind: EntryKind::Whiteout,
                    ..template
                };
                self.entries.insert(path, entry);
            }
        }
        Ok(())
    }

    /// Records `DIR/.wh..wh..opq`, creating `DIR` from `template` if the
    /// layer has not named it yet.
    pub(crate) fn opaque(&mut self, dir: Vec<u8>, template: Entry) -> Result<(), TreeError> {
        self.check_ancestors(&dir)?;
        match self.entries.get_mut(&dir) {
            Some(Entry {
                kind: EntryKind::Dir { opaque },
                ..
            }) => *opaque = true,
            Some(_) => return Err(TreeError::BeneathNonDirectory { ancestor: dir }),
            None => {
                let entry = Entry {
                    path: dir.clone(),
                    kind: EntryKind::Dir { opaque: true },
                    ..template
                };
                self.entries.insert(dir, entry);
            }
        }
        Ok(())
    }

    /// The sorted entries, with the root and any missing parent directory
    /// added as `0755 root:root` directories.
    pub(crate) fn into_entries(mut self) -> Vec<Entry> {
        let missing: Vec<Vec<u8>> = self
            .entries
            .keys()
            .flat_map(|path| ancestors(path))
            .chain([Vec::new()])
            .filter(|p| !self.entries.contains_key(p))
            .collect();
        for path in missing {
            self.entries
                .entry(path.clone())
                .or_insert_with(|| implicit_dir(path));
        }
        self.entries.into_values().collect()
    }

    fn check_ancestors(&self, path: &[u8]) -> Result<(), TreeError> {
        for ancestor in ancestors(path) {
            if let Some(e) = self.entries.get(&ancestor)
                && !matches!(e.kind, EntryKind::Dir { .. })
            {
                return Err(TreeError::BeneathNonDirectory { ancestor });
            }
        }
        Ok(())
    }

    fn remove_descendants(&mut self, dir: &[u8]) {
        let mut prefix = dir.to_vec();
        prefix.push(b'/');
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for path in doomed {
            self.entries.remove(&path);
        }
    }
}

/// Proper ancestors of a path, root excluded, nearest last.
fn ancestors(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current = parent_of(path);
    while let Some(p) = current.filter(|p| !p.is_empty()) {
        out.push(p.to_vec());
        current = parent_of(p);
    }
    out.reverse();
    out
}

fn implicit_dir(path: Vec<u8>) -> Entry {
    Entry {
        path,
        kind: EntryKind::Dir { opaque: false },
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_secs: 0,
        mtime_nanos: 0,
        xattrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            kind,
            ..implicit_dir(path.to_vec())
        }
    }

    #[test]
    fn symlink_then_write_is_refused() {
        let mut t = LayerTree::default();
        t.insert(e(
            b"evil",
            EntryKind::Symlink {
                target: b"/etc".to_vec(),
            },
        ))
        .unwrap();
        assert_eq!(
            t.insert(e(b"evil/passwd", EntryKind::Fifo)),
            Err(TreeError::BeneathNonDirectory {
                ancestor: b"evil".to_vec()
            })
        );
    }

    #[test]
    fn replacing_a_dir_drops_its_children() {
        let mut t = LayerTree::default();
        t.insert(e(b"a", EntryKind::Dir { opaque: false })).unwrap();
        t.insert(e(b"a/x", EntryKind::Fifo)).unwrap();
        t.insert(e(
            b"a",
            EntryKind::Symlink {
                target: b"b".to_vec(),
            },
        ))
        .unwrap();
        let paths: Vec<_> = t.into_entries().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec![b"".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn markers_and_implicit_parents() {
        let mut t = LayerTree::default();
        t.opaque(b"var/lib".to_vec(), implicit_dir(Vec::new()))
            .unwrap();
        t.whiteout(b"etc/motd".to_vec(), implicit_dir(Vec::new()))
            .unwrap();
        t.insert(e(b"var/lib", EntryKind::Dir { opaque: false }))
            .unwrap();
        let entries = t.into_entries();
        let kinds: Vec<_> = entries
            .iter()
            .map(|e| (e.path.as_slice(), &e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (&b""[..], &EntryKind::Dir { opaque: false }),
                (b"etc", &EntryKind::Dir { opaque: false }),
                (b"etc/motd", &EntryKind::Whiteout),
                (b"var", &EntryKind::Dir { opaque: false }),
                (b"var/lib", &EntryKind::Dir { opaque: true }),
            ]
        );
    }

    #[test]
    fn hardlink_needs_a_target_in_the_layer() {
        let mut t = LayerTree::default();
        assert_eq!(
            t.insert(e(
                b"l",
                EntryKind::Hardlink {
                    target: b"f".to_vec()
                }
            )),
            Err(TreeError::BadHardlinkTarget)
        );
        t.insert(e(
            b"f",
            EntryKind::File {
                size: 0,
                chunks: vec![],
            },
        ))
        .unwrap();
        t.insert(e(
            b"l",
            EntryKind::Hardlink {
                target: b"f".to_vec(),
            },
        ))
        .unwrap();
    }
}

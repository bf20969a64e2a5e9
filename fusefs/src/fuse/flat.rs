//! Flat image views: an image's layers merged into one tree, as overlayfs
//! would show them, for chroot-based runners (Apptainer, HTC wrappers) that
//! take a plain directory. The merged tree is one more layer to the
//! filesystem: its chunk table joins the layers' tables, each at its own
//! base in one virtual blob, and its source sends each range to its layer.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use lazy_cache::{ChunkSource, SourceError};
use lazy_format::{Entry, EntryKind, LayerMeta};

use crate::fuse::layer::AttachedLayer;

/// The merged metadata of `layers` (bottom first) and the source of its
/// virtual blob. Upper entries replace lower ones; a whiteout removes the
/// path and what is under it; an opaque directory hides what lower layers
/// hold under it; a non-directory over a directory removes its contents.
pub fn merge(layers: &[Arc<AttachedLayer>]) -> (LayerMeta, MergedSource) {
    let mut bases = Vec::new();
    let mut chunk_bases = Vec::new();
    let (mut base, mut chunk_base) = (0u64, 0u32);
    let mut chunks = Vec::new();
    for layer in layers {
        bases.push(base);
        chunk_bases.push(chunk_base);
        chunks.extend(layer.meta.chunks.iter().map(|c| {
            let mut c = *c;
            c.offset += base;
            c
        }));
        base += layer.blob_size;
        chunk_base += u32::try_from(layer.meta.chunks.len()).expect("fewer than 4G chunks");
    }

    // Path → (layer index, entry, chunk indexes remapped).
    let mut tree: BTreeMap<Vec<u8>, (usize, Entry)> = BTreeMap::new();
    for (li, layer) in layers.iter().enumerate() {
        for entry in &layer.meta.entries {
            match &entry.kind {
                EntryKind::Whiteout => {
                    remove_under(&mut tree, &entry.path);
                    tree.remove(&entry.path);
                    continue;
                }
                EntryKind::Dir { opaque: true } => remove_under(&mut tree, &entry.path),
                EntryKind::Dir { .. } => {}
                _ => {
                    let was_dir = tree
                        .get(&entry.path)
                        .is_some_and(|(_, e)| matches!(e.kind, EntryKind::Dir { .. }));
                    if was_dir {
                        remove_under(&mut tree, &entry.path);
                    }
                }
            }
            tree.insert(entry.path.clone(), (li, remapped(entry, chunk_bases[li])));
        }
    }

    // A hardlink stays one only if its target still comes from its layer;
    // otherwise it becomes a copy of the file it linked to there.
    let links: Vec<(Vec<u8>, usize, Vec<u8>)> = tree
        .iter()
        .filter_map(|(path, (li, e))| match &e.kind {
            EntryKind::Hardlink { target } => Some((path.clone(), *li, target.clone())),
            _ => None,
        })
        .collect();
    for (path, li, target) in links {
        if tree.get(&target).is_some_and(|(tli, _)| *tli == li) {
            continue;
        }
        let layer = &layers[li];
        let copy = layer
            .index_of_path(&target)
            .and_then(|i| layer.entry(layer.resolve(i)))
            .filter(|e| matches!(e.kind, EntryKind::File { .. }));
        match copy {
            Some(file) => {
                let mut entry = remapped(file, chunk_bases[li]);
                entry.path.clone_from(&path);
                tree.insert(path, (li, entry));
            }
            None => {
                tree.remove(&path);
            }
        }
    }

    let entries = tree
        .into_values()
        .map(|(_, mut e)| {
            if let EntryKind::Dir { opaque } = &mut e.kind {
                *opaque = false;
            }
            e
        })
        .collect();
    let parts = layers
        .iter()
        .zip(bases)
        .map(|(l, base)| (base..base + l.blob_size, Arc::clone(&l.source)))
        .collect();
    (LayerMeta { entries, chunks }, MergedSource { parts })
}

/// `entry` with its chunk indexes moved by `chunk_base`.
fn remapped(entry: &Entry, chunk_base: u32) -> Entry {
    let mut entry = entry.clone();
    if let EntryKind::File { chunks, .. } = &mut entry.kind {
        for c in chunks {
            *c += chunk_base;
        }
    }
    entry
}

/// Removes every path under `dir` (not `dir` itself).
fn remove_under(tree: &mut BTreeMap<Vec<u8>, (usize, Entry)>, dir: &[u8]) {
    let mut prefix = dir.to_vec();
    if !prefix.is_empty() {
        prefix.push(b'/');
    }
    let doomed: Vec<Vec<u8>> = tree
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .map(|(p, _)| p.clone())
        .filter(|p| !p.is_empty())
        .collect();
    for path in doomed {
        tree.remove(&path);
    }
}

/// The virtual blob of a merged view: each layer's blob at its base.
pub struct MergedSource {
    parts: Vec<(Range<u64>, Arc<dyn ChunkSource>)>,
}

impl ChunkSource for MergedSource {
    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for (span, source) in &self.parts {
                let (start, end) = (range.start.max(span.start), range.end.min(span.end));
                if start < end {
                    let bytes = source
                        .read_range(start - span.start..end - span.start)
                        .await?;
                    out.extend_from_slice(&bytes);
                }
            }
            let expected = range.end.saturating_sub(range.start);
            if out.len() as u64 != expected {
                return Err(SourceError(format!(
                    "range {range:?} is outside the merged image's layers"
                )));
            }
            Ok(out)
        })
    }

    fn blob_name(&self) -> &str {
        "merged image"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::layer::{test_entry as entry, test_layer as layer};

    fn dir(opaque: bool) -> EntryKind {
        EntryKind::Dir { opaque }
    }

    fn file() -> EntryKind {
        EntryKind::File {
            size: 0,
            chunks: Vec::new(),
        }
    }

    #[test]
    fn whiteouts_opaque_dirs_and_replacements() {
        let lower = layer(
            1,
            vec![
                entry(b"", dir(false)),
                entry(b"a", dir(false)),
                entry(b"a/gone", file()),
                entry(b"a/kept", file()),
                entry(b"o", dir(false)),
                entry(b"o/hidden", file()),
                entry(b"r", dir(false)),
                entry(b"r/x", file()),
                entry(b"t", file()),
                entry(
                    b"t-link",
                    EntryKind::Hardlink {
                        target: b"t".to_vec(),
                    },
                ),
            ],
        );
        let upper = layer(
            2,
            vec![
                entry(b"", dir(false)),
                entry(b"a", dir(false)),
                entry(b"a/gone", EntryKind::Whiteout),
                entry(b"o", dir(true)),
                entry(b"o/new", file()),
                entry(b"r", file()),
                entry(
                    b"t",
                    EntryKind::Symlink {
                        target: b"a/kept".to_vec(),
                    },
                ),
            ],
        );
        let (meta, _) = merge(&[lower, upper]);
        let paths: Vec<&[u8]> = meta.entries.iter().map(|e| e.path.as_slice()).collect();
        let expected: Vec<&[u8]> =
            vec![b"", b"a", b"a/kept", b"o", b"o/new", b"r", b"t", b"t-link"];
        assert_eq!(paths, expected);
        assert!(matches!(
            meta.entries[3].kind,
            EntryKind::Dir { opaque: false }
        ));
        assert!(
            matches!(meta.entries[5].kind, EntryKind::File { .. }),
            "r is a file now"
        );
        assert!(
            matches!(meta.entries[7].kind, EntryKind::File { .. }),
            "t-link keeps the file it linked to, not the symlink over t"
        );
    }
}

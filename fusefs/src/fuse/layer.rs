//! One attached lazy layer: its metadata plus the indexes the filesystem
//! needs (children of each directory, link counts, file chunk offsets).

use std::sync::Arc;

use lazy_cache::ChunkSource;
use lazy_format::{ChunkRecord, Entry, EntryKind, LayerMeta, parent_of};

/// An attached layer.
pub struct AttachedLayer {
    /// `sha256:<hex>` of the lazy blob; also its directory name in the mount.
    pub digest: String,
    /// Stable slot number (inode prefix).
    pub slot: u32,
    /// The layer's entries and chunk table.
    pub meta: LayerMeta,
    /// Size of the lazy blob in the registry.
    pub blob_size: u64,
    /// Where its chunks come from.
    pub source: Arc<dyn ChunkSource>,
    /// Children of each directory entry (indexes, in name order).
    children: Vec<Vec<u32>>,
    /// Link count of each entry (hardlink targets count their links).
    nlink: Vec<u32>,
    /// Chunk-table indexes in blob order (for reading around a miss).
    by_offset: Vec<u32>,
    /// ELF objects whose libraries were fetched ahead.
    scanned: crate::libs::Scanned,
}

impl std::fmt::Debug for AttachedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedLayer")
            .field("digest", &self.digest)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl AttachedLayer {
    /// Indexes `meta` (validated by the decoder: sorted, parents present).
    pub fn new(
        digest: String,
        slot: u32,
        meta: LayerMeta,
        blob_size: u64,
        source: Arc<dyn ChunkSource>,
    ) -> Self {
        let n = meta.entries.len();
        let mut children = vec![Vec::new(); n];
        let mut nlink = vec![1u32; n];
        for (i, entry) in meta.entries.iter().enumerate().skip(1) {
            let i = u32::try_from(i).expect("fewer than 4G entries");
            let parent = parent_of(&entry.path).and_then(|p| index_of(&meta, p));
            if let Some(parent) = parent {
                children[parent as usize].push(i);
            }
            match &entry.kind {
                EntryKind::Dir { .. } => {
                    if let Some(parent) = parent {
                        nlink[parent as usize] += 1;
                    }
                }
                EntryKind::Hardlink { target } => {
                    if let Some(t) = index_of(&meta, target) {
                        nlink[t as usize] += 1;
                    }
                }
                _ => {}
            }
        }
        for (i, entry) in meta.entries.iter().enumerate() {
            if matches!(entry.kind, EntryKind::Dir { .. }) {
                nlink[i] += 1; // "." besides its name
            }
        }
        // Entries are sorted by full path, so children by path are sorted by name.
        let mut by_offset: Vec<u32> =
            (0..u32::try_from(meta.chunks.len()).expect("fewer than 4G chunks")).collect();
        by_offset.sort_by_key(|&i| meta.chunks[i as usize].offset);
        Self {
            digest,
            slot,
            meta,
            blob_size,
            source,
            children,
            nlink,
            by_offset,
            scanned: Default::default(),
        }
    }

    /// Whether the libraries of object `index` are still to fetch ahead
    /// (true once: the caller does it).
    pub fn first_scan(&self, index: u32) -> bool {
        self.scanned.first(index)
    }

    /// Entry by index.
    pub fn entry(&self, index: u32) -> Option<&Entry> {
        self.meta.entries.get(index as usize)
    }

    /// Index of the child `name` of directory `dir`.
    pub fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let dir_path = &self.entry(dir)?.path;
        let mut path = Vec::with_capacity(dir_path.len() + 1 + name.len());
        if !dir_path.is_empty() {
            path.extend_from_slice(dir_path);
            path.push(b'/');
        }
        path.extend_from_slice(name);
        index_of(&self.meta, &path)
    }

    /// Children of a directory.
    pub fn children(&self, dir: u32) -> &[u32] {
        self.children.get(dir as usize).map_or(&[], Vec::as_slice)
    }

    /// Link count.
    pub fn nlink(&self, index: u32) -> u32 {
        self.nlink.get(index as usize).copied().unwrap_or(1)
    }

    /// Follows a hardlink to the entry that owns the inode.
    pub fn resolve(&self, index: u32) -> u32 {
        match self.entry(index).map(|e| &e.kind) {
            Some(EntryKind::Hardlink { target }) => index_of(&self.meta, target).unwrap_or(index),
            _ => index,
        }
    }

    /// The chunks of file `index` covering `offset..offset+len`: their
    /// chunk-table indexes and the offset into the first. Empty past the end.
    pub fn chunks_for(&self, index: u32, offset: u64, len: u64) -> FileSpan {
        let mut span = FileSpan::default();
        let Some(EntryKind::File { chunks, .. }) = self.entry(index).map(|e| &e.kind) else {
            return span;
        };
        let end = offset.saturating_add(len);
        let mut at: u64 = 0;
        for &table_index in chunks {
            let Some(record) = self.meta.chunks.get(table_index as usize) else {
                break;
            };
            let next = at + u64::from(record.size);
            if next > offset && at < end {
                if span.records.is_empty() {
                    span.skip = offset - at;
                }
                span.records.push(*record);
                span.indexes.push(table_index);
            }
            if next >= end {
                break;
            }
            at = next;
        }
        span
    }
}

impl AttachedLayer {
    /// The chunks stored after `chunk` in the blob, up to `budget` stored
    /// bytes past its end: the files next to it in the layer's tar order.
    pub fn chunks_after(&self, chunk: &ChunkRecord, budget: u64) -> Vec<ChunkRecord> {
        let chunks = &self.meta.chunks;
        let start = self
            .by_offset
            .partition_point(|&i| chunks[i as usize].offset < chunk.end());
        self.by_offset[start..]
            .iter()
            .map(|&i| chunks[i as usize])
            .take_while(|c| c.end() - chunk.end() <= budget)
            .collect()
    }
}

/// The chunks covering a byte range of a file.
#[derive(Debug, Default)]
pub struct FileSpan {
    /// Chunk records, in file order.
    pub records: Vec<ChunkRecord>,
    /// Their chunk-table indexes.
    pub indexes: Vec<u32>,
    /// Offset of the range in the first chunk.
    pub skip: u64,
}

impl AttachedLayer {
    /// Index of an entry by full path.
    pub fn index_of_path(&self, path: &[u8]) -> Option<u32> {
        index_of(&self.meta, path)
    }
}

fn index_of(meta: &LayerMeta, path: &[u8]) -> Option<u32> {
    meta.entries
        .binary_search_by(|e| e.path.as_slice().cmp(path))
        .ok()
        .and_then(|i| u32::try_from(i).ok())
}

/// A chunk source for tests that read no chunks.
#[cfg(test)]
pub(crate) struct NoSource;

/// An entry for tests: `path` of `kind`, mode 0755, owned by root.
#[cfg(test)]
pub(crate) fn test_entry(path: &[u8], kind: EntryKind) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_secs: 0,
        mtime_nanos: 0,
        xattrs: Vec::new(),
    }
}

/// A layer for tests: `entries` (sorted, root first) and no chunks, named
/// `sha256:<slot>`.
#[cfg(test)]
pub(crate) fn test_layer(slot: u32, entries: Vec<Entry>) -> Arc<AttachedLayer> {
    let meta = LayerMeta {
        entries,
        chunks: Vec::new(),
    };
    Arc::new(AttachedLayer::new(
        format!("sha256:{slot}"),
        slot,
        meta,
        0,
        Arc::new(NoSource),
    ))
}

#[cfg(test)]
impl ChunkSource for NoSource {
    fn read_range(
        &self,
        _range: std::ops::Range<u64>,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<u8>, lazy_cache::SourceError>> {
        Box::pin(async { Err(lazy_cache::SourceError("no source in this test".into())) })
    }

    fn blob_name(&self) -> &str {
        "none"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazy_format::{ChunkDigest, Compression};

    #[test]
    fn chunks_after_follow_blob_order_within_the_budget() {
        // Chunk table order differs from blob order: 0 lies after 1 and 2.
        let record = |n: u8, offset: u64| ChunkRecord {
            digest: ChunkDigest([n; 32]),
            offset,
            stored_len: 100,
            size: 100,
            compression: Compression::Zstd,
        };
        let meta = LayerMeta {
            entries: Vec::new(),
            chunks: vec![record(0, 300), record(1, 0), record(2, 100), record(3, 200)],
        };
        let layer = AttachedLayer::new("sha256:x".into(), 1, meta, 400, Arc::new(NoSource));
        let digests = |c: Vec<ChunkRecord>| c.iter().map(|r| r.digest.0[0]).collect::<Vec<_>>();
        let first = record(1, 0);
        assert_eq!(digests(layer.chunks_after(&first, 1000)), [2, 3, 0]);
        assert_eq!(digests(layer.chunks_after(&first, 200)), [2, 3]);
        assert_eq!(digests(layer.chunks_after(&first, 99)), Vec::<u8>::new());
        assert_eq!(
            digests(layer.chunks_after(&record(0, 300), 1000)),
            Vec::<u8>::new()
        );
    }
}

//! Guessing without a record what a process reads after a miss: the rest
//! of the file when it is at most [`WHOLE_FILE_MAX`] (such files are read
//! whole or nearly: R's lazy-load databases, Python modules, configs), and
//! when it is small, the small files next to it in path order, which is the
//! blob's order: its directory's and its package's, read in a row by
//! interpreters loading a package (R's `Meta/*.rds`, `R/<pkg>.rdx`;
//! Python's `__pycache__`). Big files next to it are skipped, not fetched.

use lazy_format::{ChunkRecord, EntryKind};

use crate::fuse::layer::AttachedLayer;

/// Files up to this size are fetched whole on their first miss.
pub const WHOLE_FILE_MAX: u64 = 2 << 20;
/// Files up to this size are small: their neighbours come along.
const SMALL_FILE_MAX: u64 = 64 << 10;
/// Stored bytes of small neighbours fetched on each side of a small file.
const NEIGHBOURS_BYTES: u64 = 64 << 10;
/// Entries looked at on each side at most.
const NEIGHBOURS_LOOKED_AT: usize = 256;

/// The chunks to fetch ahead after a miss reading `read` of file `index`.
pub fn nearby(layer: &AttachedLayer, index: u32, read: &[ChunkRecord]) -> Vec<ChunkRecord> {
    let Some(EntryKind::File { size, .. }) = layer.entry(index).map(|e| &e.kind) else {
        return Vec::new();
    };
    let mut ahead = Vec::new();
    if *size <= WHOLE_FILE_MAX {
        let whole = layer.chunks_for(index, 0, *size).records;
        ahead.extend(whole.into_iter().filter(|c| !read.contains(c)));
    }
    if *size <= SMALL_FILE_MAX {
        let i = index as usize;
        let before = (0..i).rev().take(NEIGHBOURS_LOOKED_AT);
        let after = (i + 1..layer.meta.entries.len()).take(NEIGHBOURS_LOOKED_AT);
        ahead.extend(small_files(layer, before));
        ahead.extend(small_files(layer, after));
    }
    ahead
}

/// The chunks of the small files among `entries`, in their order, up to
/// [`NEIGHBOURS_BYTES`] stored.
fn small_files(layer: &AttachedLayer, entries: impl Iterator<Item = usize>) -> Vec<ChunkRecord> {
    let mut chunks = Vec::new();
    let mut bytes = 0;
    for i in entries {
        let Some(EntryKind::File { size, chunks: file }) =
            layer.meta.entries.get(i).map(|e| &e.kind)
        else {
            continue;
        };
        if *size > SMALL_FILE_MAX {
            continue;
        }
        let Some(chunk) = file
            .first()
            .and_then(|&c| layer.meta.chunks.get(c as usize))
        else {
            continue;
        };
        bytes += u64::from(chunk.stored_len);
        if bytes > NEIGHBOURS_BYTES {
            break;
        }
        chunks.push(*chunk);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lazy_format::{ChunkDigest, Compression, Entry, LayerMeta};

    use super::*;
    use crate::fuse::layer::{NoSource, test_entry};

    /// A layer of files named by their sizes in KiB, in path order, each
    /// stored at half its size, one chunk per 512 KiB.
    fn layer(sizes_kib: &[u64]) -> AttachedLayer {
        let mut entries = vec![entry("", EntryKind::Dir { opaque: false })];
        let mut chunks = Vec::new();
        let mut offset = 0;
        for (n, &kib) in sizes_kib.iter().enumerate() {
            let mut file = Vec::new();
            let mut left = kib << 10;
            while left > 0 {
                let size = left.min(512 << 10);
                let stored = size / 2;
                file.push(u32::try_from(chunks.len()).unwrap());
                chunks.push(ChunkRecord {
                    digest: ChunkDigest([u8::try_from(chunks.len()).unwrap(); 32]),
                    offset,
                    stored_len: u32::try_from(stored).unwrap(),
                    size: u32::try_from(size).unwrap(),
                    compression: Compression::Zstd,
                });
                offset += stored;
                left -= size;
            }
            let kind = EntryKind::File {
                size: kib << 10,
                chunks: file,
            };
            entries.push(entry(&format!("f{n:03}"), kind));
        }
        let meta = LayerMeta { entries, chunks };
        AttachedLayer::new("sha256:x".into(), 1, meta, offset, Arc::new(NoSource))
    }

    fn entry(path: &str, kind: EntryKind) -> Entry {
        test_entry(path.as_bytes(), kind)
    }

    /// The first chunk's digest byte of each chunk: which chunk it is.
    fn ids(chunks: &[ChunkRecord]) -> Vec<u8> {
        chunks.iter().map(|c| c.digest.0[0]).collect()
    }

    #[test]
    fn a_small_file_brings_its_small_neighbours_within_the_budget() {
        // Entries 1..=8: 16 KiB files (8 KiB stored), a 1 MiB file (two
        // chunks) in the middle, skipped.
        let layer = layer(&[
            16, 16, 16, 1024, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
        ]);
        let read = layer.chunks_for(6, 0, 16 << 10).records; // file f005: chunk 6
        assert_eq!(ids(&read), [6]);
        let ahead = nearby(&layer, 6, &read);
        // Before: chunk 5, skip the big file (3, 4), then 2, 1, 0 (32 KiB).
        // After: 8 chunks of 8 KiB = the 64 KiB budget.
        assert_eq!(ids(&ahead), [5, 2, 1, 0, 7, 8, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_file_up_to_2_mib_comes_whole_and_a_bigger_one_does_not() {
        let layer = layer(&[2048, 2049]);
        let read = layer.chunks_for(1, 600 << 10, 4096).records;
        assert_eq!(ids(&read), [1]);
        assert_eq!(
            ids(&nearby(&layer, 1, &read)),
            [0, 2, 3],
            "the rest of file 1"
        );
        let read = layer.chunks_for(2, 0, 4096).records;
        assert!(
            nearby(&layer, 2, &read).is_empty(),
            "too big, and not small"
        );
    }
}

//! The rocksdb index of cached chunks: digest → size and last access.
//! Written after the chunk file is in place, so an index entry always
//! names a complete file; start-up reconciles the two. A second column
//! family maps a multi-chunk file (by its chunk list) to the cached file
//! assembled from it (by its content digest).

use std::path::Path;

use lazy_format::ChunkDigest;
use rocksdb::{DB, IteratorMode, Options, WriteBatch};

use crate::CacheError;

/// What the index records about one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Last use, milliseconds since the epoch (hits are written in
    /// batches: see [`crate::ChunkCache::persist_use_times`]).
    pub last_access_ms: u64,
}

impl IndexEntry {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..].copy_from_slice(&self.last_access_ms.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (size, last) = bytes.split_at(8);
        Some(Self {
            size: u64::from_le_bytes(size.try_into().ok()?),
            last_access_ms: from_stored_time(u64::from_le_bytes(last.try_into().ok()?)),
        })
    }
}

/// Older indexes stored seconds: a value below 10^11 is seconds (10^11 ms
/// is in 1973; 10^11 s in the year 5138).
fn from_stored_time(value: u64) -> u64 {
    if value < 100_000_000_000 {
        value.saturating_mul(1000)
    } else {
        value
    }
}

/// Column family of assembled files: chunk-list digest → content digest.
const ASSEMBLED: &str = "assembled";

/// An index record by raw key: parsed, or `None` when malformed.
pub type RawEntry = (Vec<u8>, Option<(ChunkDigest, IndexEntry)>);

/// The chunk index database.
pub struct ChunkIndex {
    db: DB,
}

impl std::fmt::Debug for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkIndex")
            .field("path", &self.db.path())
            .finish()
    }
}

fn db_err(e: rocksdb::Error) -> CacheError {
    CacheError::Index(e.into_string())
}

impl ChunkIndex {
    /// Opens (creating) `<cache>/index`.
    pub fn open(cache_dir: &Path) -> Result<Self, CacheError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Small records, few writes: keep the footprint small.
        opts.set_keep_log_file_num(2);
        opts.set_max_open_files(64);
        opts.create_missing_column_families(true);
        let db =
            DB::open_cf(&opts, cache_dir.join("index"), ["default", ASSEMBLED]).map_err(db_err)?;
        Ok(Self { db })
    }

    fn assembled_cf(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(ASSEMBLED)
            .expect("column family created at open")
    }

    /// Records that the file with chunk list `list` is cached whole as `content`.
    pub fn put_assembled(
        &self,
        list: &ChunkDigest,
        content: &ChunkDigest,
    ) -> Result<(), CacheError> {
        self.db
            .put_cf(self.assembled_cf(), list.0, content.0)
            .map_err(db_err)
    }

    /// The content digest of the file assembled from chunk list `list`,
    /// if one was (it may have been evicted since).
    pub fn assembled(&self, list: &ChunkDigest) -> Result<Option<ChunkDigest>, CacheError> {
        let value = self
            .db
            .get_pinned_cf(self.assembled_cf(), list.0)
            .map_err(db_err)?;
        Ok(value.and_then(|v| <[u8; 32]>::try_from(&v[..]).ok().map(ChunkDigest)))
    }

    /// Drops the assembled-file records whose content `keep` rejects;
    /// returns the content digests of the others.
    pub fn prune_assembled(
        &self,
        keep: impl Fn(&ChunkDigest) -> bool,
    ) -> Result<Vec<ChunkDigest>, CacheError> {
        let cf = self.assembled_cf();
        let mut batch = WriteBatch::default();
        let mut kept = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(db_err)?;
            match <[u8; 32]>::try_from(&value[..]).ok().map(ChunkDigest) {
                Some(content) if keep(&content) => kept.push(content),
                _ => batch.delete_cf(cf, key),
            }
        }
        self.db.write(batch).map_err(db_err)?;
        Ok(kept)
    }

    /// Records a chunk.
    pub fn put(&self, digest: &ChunkDigest, entry: IndexEntry) -> Result<(), CacheError> {
        self.db.put(digest.0, entry.encode()).map_err(db_err)
    }

    /// Records the last use of chunks, in one write.
    pub fn put_all(&self, entries: &[(ChunkDigest, IndexEntry)]) -> Result<(), CacheError> {
        let mut batch = WriteBatch::default();
        for (digest, entry) in entries {
            batch.put(digest.0, entry.encode());
        }
        self.db.write(batch).map_err(db_err)
    }

    /// Forgets chunks.
    pub fn delete_all(&self, digests: &[ChunkDigest]) -> Result<(), CacheError> {
        let mut batch = WriteBatch::default();
        for d in digests {
            batch.delete(d.0);
        }
        self.db.write(batch).map_err(db_err)
    }

    /// Every entry by raw key; malformed records are `None` for cleanup.
    pub fn entries(&self) -> Result<Vec<RawEntry>, CacheError> {
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::Start) {
            let (key, value) = item.map_err(db_err)?;
            let parsed = <[u8; 32]>::try_from(&key[..])
                .ok()
                .and_then(|k| IndexEntry::decode(&value).map(|e| (ChunkDigest(k), e)));
            out.push((key.to_vec(), parsed));
        }
        Ok(out)
    }

    /// Deletes a raw key (for malformed records).
    pub fn delete_raw(&self, key: &[u8]) -> Result<(), CacheError> {
        self.db.delete(key).map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_seconds_from_older_indexes_read_as_milliseconds() {
        let mut old = [0u8; 16];
        old[..8].copy_from_slice(&5u64.to_le_bytes());
        old[8..].copy_from_slice(&1_700_000_000u64.to_le_bytes());
        let entry = IndexEntry::decode(&old).unwrap();
        assert_eq!(entry.last_access_ms, 1_700_000_000_000);
        let new = IndexEntry {
            size: 5,
            last_access_ms: 1_700_000_000_123,
        };
        assert_eq!(IndexEntry::decode(&new.encode()), Some(new));
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = ChunkDigest::of(b"x");
        {
            let index = ChunkIndex::open(dir.path()).unwrap();
            index
                .put(
                    &d,
                    IndexEntry {
                        size: 7,
                        last_access_ms: 1_700_000_000_123,
                    },
                )
                .unwrap();
        }
        let index = ChunkIndex::open(dir.path()).unwrap();
        let entries = index.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].1,
            Some((
                d,
                IndexEntry {
                    size: 7,
                    last_access_ms: 1_700_000_000_123
                }
            ))
        );
        index.delete_all(&[d]).unwrap();
        assert!(index.entries().unwrap().is_empty());
    }

    #[test]
    fn assembled_records_persist_apart_from_chunks_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let (list, content, gone) = (
            ChunkDigest::of(b"list"),
            ChunkDigest::of(b"content"),
            ChunkDigest::of(b"gone"),
        );
        {
            let index = ChunkIndex::open(dir.path()).unwrap();
            index.put_assembled(&list, &content).unwrap();
            index.put_assembled(&gone, &gone).unwrap();
        }
        let index = ChunkIndex::open(dir.path()).unwrap();
        assert!(index.entries().unwrap().is_empty(), "not chunk entries");
        assert_eq!(index.assembled(&list).unwrap(), Some(content));
        assert_eq!(
            index.prune_assembled(|c| *c == content).unwrap(),
            vec![content]
        );
        assert_eq!(index.assembled(&gone).unwrap(), None);
        assert_eq!(index.assembled(&list).unwrap(), Some(content));
    }
}

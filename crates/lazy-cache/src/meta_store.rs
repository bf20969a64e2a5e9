//! Cached layer metadata (`[metadata][footer]` tails), so attached layers
//! keep working when their registry is gone.

use std::fs;
use std::path::PathBuf;

use lazy_format::{LayerMeta, decode_tail};
use lazy_statefile::{Durability, write_atomic};

use crate::CacheError;

/// Layer tails in `<cache>/layers/<digest hex>`: 8 bytes of blob size, then the tail.
#[derive(Debug, Clone)]
pub struct MetaStore {
    dir: PathBuf,
}

impl MetaStore {
    /// Opens (creating) `<cache>/layers`.
    pub fn open(cache_dir: &std::path::Path) -> Result<Self, CacheError> {
        let dir = cache_dir.join("layers");
        fs::create_dir_all(&dir).map_err(|e| CacheError::store(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, layer_digest: &str) -> Result<PathBuf, CacheError> {
        let hex = layer_digest.strip_prefix("sha256:").unwrap_or(layer_digest);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CacheError::store(
                &self.dir,
                format!("invalid layer digest {layer_digest:?}"),
            ));
        }
        Ok(self.dir.join(hex))
    }

    /// Stores a layer's tail (already decoded and validated by the caller);
    /// safe against concurrent puts of the same layer.
    pub fn put(&self, layer_digest: &str, blob_size: u64, tail: &[u8]) -> Result<(), CacheError> {
        let path = self.path(layer_digest)?;
        let mut bytes = blob_size.to_le_bytes().to_vec();
        bytes.extend_from_slice(tail);
        // Durable: an attached layer must come back after a power cut too.
        write_atomic(&path, &bytes, Durability::Synced).map_err(|e| CacheError::store(&path, e))
    }

    /// The cached metadata of a layer, if any and valid. Returns it with
    /// its blob size and tail length.
    pub fn get(&self, layer_digest: &str) -> Result<Option<(LayerMeta, u64, u64)>, CacheError> {
        let path = self.path(layer_digest)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::store(&path, e)),
        };
        let Some((size, tail)) = bytes.split_first_chunk::<8>() else {
            return Ok(None);
        };
        let blob_size = u64::from_le_bytes(*size);
        match decode_tail(tail, blob_size) {
            Ok(meta) => Ok(Some((meta, blob_size, tail.len() as u64))),
            Err(e) => {
                tracing::warn!("discarding corrupt cached metadata of {layer_digest}: {e}");
                let _ = fs::remove_file(&path);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_puts_of_one_layer_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        let digest = format!("sha256:{}", "ab".repeat(32));
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let (store, digest) = (&store, &digest);
                s.spawn(move || {
                    for _ in 0..20 {
                        store.put(digest, 100, &[t; 64]).unwrap();
                    }
                });
            }
        });
        let files = fs::read_dir(dir.path().join("layers")).unwrap().count();
        assert_eq!(files, 1, "one file, no temp files left");
    }
}

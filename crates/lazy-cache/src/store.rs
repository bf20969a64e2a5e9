//! Chunk files: `<dir>/chunks/<2 hex>/<64 hex>`, uncompressed, verified
//! before they are written. Written to a temp file and renamed into place,
//! so a crash never leaves a partial chunk under its final name.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lazy_format::ChunkDigest;
use lazy_statefile::{Durability, TEMP_SUFFIX, write_atomic};

use crate::CacheError;

/// The chunk files of one cache directory.
#[derive(Debug)]
pub struct ChunkStore {
    dir: PathBuf,
    temp_counter: AtomicU64,
}

impl ChunkStore {
    /// Opens (creating) `<cache>/chunks`.
    pub fn open(cache_dir: &Path) -> Result<Self, CacheError> {
        let dir = cache_dir.join("chunks");
        fs::create_dir_all(&dir).map_err(|e| CacheError::store(&dir, e))?;
        Ok(Self {
            dir,
            temp_counter: AtomicU64::new(0),
        })
    }

    /// Where a chunk lives.
    pub fn path(&self, digest: &ChunkDigest) -> PathBuf {
        let hex = digest.hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Writes verified chunk bytes under their digest (temp file, rename).
    /// Not fsynced: a chunk lost to a power cut fails the size check of
    /// start-up reconciliation and is fetched again.
    pub fn write(&self, digest: &ChunkDigest, data: &[u8]) -> Result<(), CacheError> {
        let path = self.path(digest);
        let parent = path.parent().expect("chunk path has a parent");
        fs::create_dir_all(parent).map_err(|e| CacheError::store(parent, e))?;
        write_atomic(&path, data, Durability::ProcessCrash).map_err(|e| CacheError::store(&path, e))
    }

    /// A new temp file for content whose digest is known only once written
    /// (an assembled file), under `chunks/partial/`: a crash leaves it to
    /// the next start's [`ChunkStore::scan`], which deletes it.
    pub fn create_partial(&self) -> Result<(PathBuf, File), CacheError> {
        let dir = self.dir.join("partial");
        fs::create_dir_all(&dir).map_err(|e| CacheError::store(&dir, e))?;
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}.{n}{TEMP_SUFFIX}", std::process::id()));
        let file = File::create(&path).map_err(|e| CacheError::store(&path, e))?;
        Ok((path, file))
    }

    /// Moves a complete partial file into place under its digest.
    pub fn install(&self, partial: &Path, digest: &ChunkDigest) -> Result<(), CacheError> {
        let path = self.path(digest);
        let parent = path.parent().expect("chunk path has a parent");
        let result = fs::create_dir_all(parent).and_then(|()| fs::rename(partial, &path));
        if let Err(e) = result {
            let _ = fs::remove_file(partial);
            return Err(CacheError::store(&path, e));
        }
        Ok(())
    }

    /// The sha256 of a stored file, read in pieces (assembled files are big).
    pub fn hash(&self, digest: &ChunkDigest) -> Result<ChunkDigest, CacheError> {
        use sha2::{Digest, Sha256};
        let path = self.path(digest);
        let mut hasher = Sha256::new();
        File::open(&path)
            .and_then(|mut f| std::io::copy(&mut f, &mut hasher))
            .map_err(|e| CacheError::store(&path, e))?;
        Ok(ChunkDigest(hasher.finalize().into()))
    }

    /// Reads `buf.len()` bytes of a chunk from `offset`.
    ///
    /// A read from the start of a chunk asks the kernel to read the rest of
    /// the chunk file ahead: every read opens the file anew, so the file's
    /// own read-ahead state never builds up, and sequential readers would
    /// otherwise wait on the disk once per FUSE request.
    pub fn read_at(
        &self,
        digest: &ChunkDigest,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), CacheError> {
        let path = self.path(digest);
        File::open(&path)
            .and_then(|f| {
                if offset == 0 {
                    read_ahead(&f, buf.len());
                }
                f.read_exact_at(buf, offset)
            })
            .map_err(|e| CacheError::store(&path, e))
    }

    /// Asks the kernel to read a chunk file into the page cache (a hint:
    /// a missing file or a failure only costs speed).
    pub fn will_need(&self, digest: &ChunkDigest) {
        if let Ok(f) = File::open(self.path(digest)) {
            read_ahead(&f, 0);
        }
    }

    /// Reads a whole chunk.
    pub fn read(&self, digest: &ChunkDigest) -> Result<Vec<u8>, CacheError> {
        let path = self.path(digest);
        fs::read(&path).map_err(|e| CacheError::store(&path, e))
    }

    /// Deletes a chunk file (missing is fine).
    pub fn remove(&self, digest: &ChunkDigest) -> Result<(), CacheError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CacheError::store(&path, e)),
            _ => Ok(()),
        }
    }

    /// Every chunk file on disk with its size; deletes leftover temp files
    /// and files whose names are not digests.
    pub fn scan(&self) -> Result<Vec<(ChunkDigest, u64)>, CacheError> {
        let mut found = Vec::new();
        let io = |p: &Path, e| CacheError::store(p, e);
        for sub in fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let sub = sub.map_err(|e| io(&self.dir, e))?.path();
            if !sub.is_dir() {
                continue;
            }
            for file in fs::read_dir(&sub).map_err(|e| io(&sub, e))? {
                let file = file.map_err(|e| io(&sub, e))?;
                let name = file.file_name();
                let digest = name.to_str().and_then(|n| n.parse::<ChunkDigest>().ok());
                match digest {
                    Some(d) => {
                        found.push((d, file.metadata().map_err(|e| io(&file.path(), e))?.len()))
                    }
                    None => {
                        tracing::debug!(path = %file.path().display(), "removing stray cache file");
                        let _ = fs::remove_file(file.path());
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Starts reading the file from `from` to its end into the page cache
/// (a hint: failure only costs speed).
fn read_ahead(file: &File, from: usize) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    if let Ok(from) = i64::try_from(from) {
        let _ = posix_fadvise(file, from, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_scan_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let d = ChunkDigest::of(b"abc");
        store.write(&d, b"abc").unwrap();
        let mut buf = [0u8; 2];
        store.read_at(&d, 1, &mut buf).unwrap();
        assert_eq!(&buf, b"bc");
        let leftover = store.path(&d).with_extension("123.tmp");
        fs::write(&leftover, b"partial").unwrap();
        let (partial, _) = store.create_partial().unwrap();
        assert_eq!(store.hash(&d).unwrap(), d);
        assert_eq!(store.scan().unwrap(), vec![(d, 3)]);
        assert!(!leftover.exists(), "temp files are cleaned");
        assert!(!partial.exists(), "partial files are cleaned");
        store.remove(&d).unwrap();
        assert!(store.scan().unwrap().is_empty());
    }
}

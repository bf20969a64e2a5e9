//! Images attached before, by reference: manifest digest, config and layer
//! list, so that running an image again needs no registry (`docker run`
//! uses a local image the same way) and works offline.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is remembered of an attached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference it was attached by.
    pub reference: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// The image config JSON.
    pub config: String,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
}

/// `<cache>/images/<sha256 of the reference>.json`.
#[derive(Debug, Clone)]
pub struct LocalImages {
    dir: PathBuf,
}

impl LocalImages {
    /// Opens (creating) `<cache>/images`.
    pub fn open(cache_dir: &Path) -> std::io::Result<Self> {
        let dir = cache_dir.join("images");
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, reference: &str) -> PathBuf {
        let digest = lazy_oci::sha256_digest(reference.as_bytes());
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{hex}.json"))
    }

    /// The record of `reference`, if attached before (unreadable records
    /// count as absent).
    pub fn get(&self, reference: &str) -> Option<ImageRecord> {
        let bytes = fs::read(self.path(reference)).ok()?;
        serde_json::from_slice::<ImageRecord>(&bytes)
            .ok()
            .filter(|r| r.reference == reference)
    }

    /// Remembers an image (temp file, rename).
    pub fn put(&self, record: &ImageRecord) -> std::io::Result<()> {
        let path = self.path(&record.reference);
        let temp = path.with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&temp, serde_json::to_vec(record)?).and_then(|()| fs::rename(&temp, &path))
    }

    /// Forgets an image.
    pub fn remove(&self, reference: &str) {
        let _ = fs::remove_file(self.path(reference));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let images = LocalImages::open(dir.path()).unwrap();
        let record = ImageRecord {
            reference: "localhost:5000/a:b".into(),
            manifest_digest: "sha256:00".into(),
            config: "{}".into(),
            layers: vec!["sha256:11".into()],
        };
        assert_eq!(images.get(&record.reference), None);
        images.put(&record).unwrap();
        assert_eq!(images.get(&record.reference), Some(record.clone()));
        assert_eq!(images.get("localhost:5000/a:c"), None);
        images.remove(&record.reference);
        assert_eq!(images.get(&record.reference), None);
    }
}

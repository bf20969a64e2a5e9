//! Images attached before, by reference: manifest digest, config and layer
//! list, so that running an image again needs no registry (`docker run`
//! uses a local image the same way) and works offline.

use std::fs;
use std::path::{Path, PathBuf};

use lazy_statefile::{Durability, set_aside, write_atomic};
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

    /// The record of `reference`, if attached before. A damaged record is
    /// set aside (with a log line) and counts as absent.
    pub fn get(&self, reference: &str) -> Option<ImageRecord> {
        let path = self.path(reference);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice::<ImageRecord>(&bytes) {
            Ok(record) if record.reference == reference => Some(record),
            Ok(record) => {
                let why = format!("holds {:?}, not {reference:?}", record.reference);
                set_aside(&path, &why);
                None
            }
            Err(e) => {
                set_aside(&path, &format_args!("not an image record: {e}"));
                None
            }
        }
    }

    /// Remembers an image (atomic and durable).
    pub fn put(&self, record: &ImageRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(record)?;
        write_atomic(&self.path(&record.reference), &bytes, Durability::Synced)
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

    #[test]
    fn damaged_records_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let images = LocalImages::open(dir.path()).unwrap();
        let path = images.path("localhost:5000/a:b");
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(images.get("localhost:5000/a:b"), None);
        assert!(!path.exists(), "set aside");
        let aside = fs::read_dir(dir.path().join("images")).unwrap().count();
        assert_eq!(aside, 1, "kept under another name");
    }
}

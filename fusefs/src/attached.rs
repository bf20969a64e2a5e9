//! The persisted list of attached layers (`<cache>/attached.json`), so a
//! restarted daemon re-attaches them from cached metadata, offline if need be.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One attached layer, as remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRecord {
    /// Blob digest.
    pub digest: String,
    /// Inode slot (stable across restarts).
    pub slot: u32,
    /// The image reference it was attached for.
    pub image: String,
    /// The repository reference its chunks are read from.
    pub repository: String,
    /// Whether its chunks are pinned.
    pub pinned: bool,
}

/// The records, saved on every change.
#[derive(Debug)]
pub struct AttachList {
    path: PathBuf,
    /// Current records.
    pub records: Vec<AttachRecord>,
}

impl AttachList {
    /// Loads `<cache>/attached.json` (empty when absent or unreadable).
    pub fn load(cache_dir: &Path) -> Self {
        let path = cache_dir.join("attached.json");
        let records = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable {}: {e}", path.display());
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Self { path, records }
    }

    /// Writes the records (temp file, rename).
    pub fn save(&self) -> std::io::Result<()> {
        let temp = self.path.with_extension("json.tmp");
        std::fs::write(
            &temp,
            serde_json::to_vec_pretty(&self.records).expect("records serialize"),
        )?;
        std::fs::rename(&temp, &self.path)
    }

    /// The next free slot.
    pub fn next_slot(&self) -> u32 {
        self.records.iter().map(|r| r.slot).max().unwrap_or(0) + 1
    }
}

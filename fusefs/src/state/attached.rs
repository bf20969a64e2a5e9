//! The persisted list of attached layers (`<cache>/attached.json`), so a
//! restarted daemon re-attaches them from cached metadata, offline if need be.
//! Read back at start as untrusted input: a damaged file is set aside and a
//! damaged entry dropped, each with a log line; never a panic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lazy_statefile::{Durability, set_aside, write_atomic};
use serde::{Deserialize, Deserializer, Serialize};

/// One attached layer, as remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRecord {
    /// Blob digest.
    pub digest: String,
    /// Inode slot (stable across restarts).
    pub slot: u32,
    /// The image references it is attached for (detaching the last one
    /// detaches the layer). Older lists held one `image`.
    #[serde(alias = "image", deserialize_with = "one_or_many")]
    pub images: Vec<String>,
    /// The repository reference its chunks are read from.
    pub repository: String,
    /// Whether its chunks are pinned.
    pub pinned: bool,
    /// The images that pinned it (`lazyctl cache pin`, `attach --pin`): it
    /// stays pinned while one of them does. Empty with `pinned` in lists
    /// written before images were told apart: pinned for all its images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_for: Vec<String>,
}

impl AttachRecord {
    /// Whether `image` holds a pin on this layer.
    pub fn pinned_by(&self, image: &str) -> bool {
        self.pinned && (self.pinned_for.is_empty() || self.pinned_for.iter().any(|i| i == image))
    }
}

/// The records, saved on every change.
#[derive(Debug)]
pub struct AttachList {
    path: PathBuf,
    /// Current records.
    pub records: Vec<AttachRecord>,
}

impl AttachList {
    /// Loads `<cache>/attached.json`: empty when absent; a file that is not
    /// a JSON list is set aside; entries that do not parse, or repeat a
    /// digest or slot, are dropped (the file is copied aside first).
    pub fn load(cache_dir: &Path) -> Self {
        let path = cache_dir.join("attached.json");
        let records = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                set_aside(&path, &format_args!("unreadable: {e}"));
                Vec::new()
            }
        };
        Self { path, records }
    }

    /// Writes the records (atomic and durable).
    pub fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.records).expect("records serialize");
        write_atomic(&self.path, &bytes, Durability::Synced)
    }

    /// The next free slot.
    pub fn next_slot(&self) -> u32 {
        self.records.iter().map(|r| r.slot).max().unwrap_or(0) + 1
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Vec<AttachRecord> {
    let values: Vec<serde_json::Value> = match serde_json::from_slice(bytes) {
        Ok(values) => values,
        Err(e) => {
            set_aside(path, &format_args!("not a list of attached layers: {e}"));
            return Vec::new();
        }
    };
    let (mut digests, mut slots) = (HashSet::new(), HashSet::new());
    let mut records = Vec::new();
    let mut dropped = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        match serde_json::from_value::<AttachRecord>(value) {
            Ok(r) if r.slot == 0 => dropped.push(format!("entry {i}: slot 0 is the root")),
            Ok(r) if r.images.is_empty() => dropped.push(format!("entry {i}: no image")),
            Ok(r) if !digests.insert(r.digest.clone()) || !slots.insert(r.slot) => {
                dropped.push(format!("entry {i}: repeats digest or slot of another"));
            }
            Ok(r) => records.push(r),
            Err(e) => dropped.push(format!("entry {i}: {e}")),
        }
    }
    if !dropped.is_empty() {
        let copy = PathBuf::from(format!("{}.damaged", path.display()));
        let kept = std::fs::copy(path, &copy).is_ok();
        tracing::warn!(
            file = %path.display(),
            copy = %if kept { copy.display().to_string() } else { "none".into() },
            "dropped damaged entries of the attached-layer list: {}",
            dropped.join("; ")
        );
    }
    records
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(image) => vec![image],
        OneOrMany::Many(images) => images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"digest":"sha256:aa","slot":1,"images":["r/a:1"],"repository":"r/a","pinned":false}"#;

    #[test]
    fn round_trips_and_reads_the_older_single_image_form() {
        let dir = tempfile::tempdir().unwrap();
        let old =
            r#"[{"digest":"sha256:aa","slot":3,"image":"r/a:1","repository":"r/a","pinned":true}]"#;
        std::fs::write(dir.path().join("attached.json"), old).unwrap();
        let list = AttachList::load(dir.path());
        assert_eq!(list.records[0].images, ["r/a:1"]);
        assert_eq!(list.next_slot(), 4);
        list.save().unwrap();
        assert_eq!(AttachList::load(dir.path()).records, list.records);
    }

    #[test]
    fn a_file_that_is_not_a_list_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attached.json");
        std::fs::write(&path, b"{\"truncated\": [").unwrap();
        let list = AttachList::load(dir.path());
        assert!(list.records.is_empty());
        assert!(!path.exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            aside
                .iter()
                .any(|n| n.starts_with("attached.json.damaged-")),
            "{aside:?}"
        );
    }

    #[test]
    fn damaged_entries_are_dropped_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attached.json");
        let text = format!(
            "[{GOOD}, {{\"digest\":7}}, {}, {}, {}]",
            GOOD.replace("\"slot\":1", "\"slot\":2"),
            GOOD.replace("sha256:aa", "sha256:bb")
                .replace("\"slot\":1", "\"slot\":0"),
            GOOD.replace("sha256:aa", "sha256:cc")
                .replace("\"slot\":1", "\"slot\":5"),
        );
        std::fs::write(&path, &text).unwrap();
        let list = AttachList::load(dir.path());
        let kept: Vec<_> = list
            .records
            .iter()
            .map(|r| (r.digest.as_str(), r.slot))
            .collect();
        assert_eq!(kept, [("sha256:aa", 1), ("sha256:cc", 5)]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("attached.json.damaged")).unwrap(),
            text,
            "the original is kept for a person to look at"
        );
    }
}

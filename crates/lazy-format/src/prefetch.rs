//! Prefetch records: which chunks a recorded run of an image read, in the
//! order it first read them. Stored beside the image (see `lazyctl record`)
//! so that lazyfsd can fetch the startup set, in parallel, before the first
//! read asks for it.

use serde::{Deserialize, Serialize};

use crate::FormatError;

/// Media type of a prefetch record blob (JSON).
pub const PREFETCH_MEDIA_TYPE: &str = "application/vnd.lazyfs.prefetch.v1+json";
/// Largest record accepted (a few hundred thousand chunks).
pub const MAX_PREFETCH_RECORD: usize = 16 << 20;

/// The chunks a run read, by layer position and chunk-table index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchRecord {
    /// Layer blob digests, in manifest order.
    pub layers: Vec<String>,
    /// `(layer position, chunk index)` in first-read order.
    pub chunks: Vec<(u32, u32)>,
}

impl PrefetchRecord {
    /// Serializes the record.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }

    /// Parses a record; references are checked when it is used.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() > MAX_PREFETCH_RECORD {
            return Err(FormatError::Layout("prefetch record larger than 16 MiB"));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| FormatError::MetaEncoding(format!("prefetch record: {e}")))
    }

    /// One record of this record's runs and `other`'s (same layers): every
    /// chunk once, in the order of the earliest point, as a fraction of its
    /// run, at which any run first read it. Runs of different lengths then
    /// interleave by progress: the first reads of every run come first.
    /// Ties keep this record's chunk first.
    pub fn merge(&self, other: &PrefetchRecord) -> Result<PrefetchRecord, FormatError> {
        if self.layers != other.layers {
            return Err(FormatError::Layout(
                "prefetch records of different layers cannot be merged",
            ));
        }
        let mut earliest: std::collections::HashMap<(u32, u32), (f64, usize)> =
            std::collections::HashMap::new();
        let runs = [&self.chunks, &other.chunks];
        let mut tie = 0;
        for chunks in runs {
            for (position, &chunk) in chunks.iter().enumerate() {
                let progress = position as f64 / chunks.len() as f64;
                let slot = earliest.entry(chunk).or_insert((progress, tie));
                if progress < slot.0 {
                    *slot = (progress, tie);
                }
                tie += 1;
            }
        }
        let mut chunks: Vec<((u32, u32), (f64, usize))> = earliest.into_iter().collect();
        chunks.sort_by(|a, b| a.1.0.total_cmp(&b.1.0).then(a.1.1.cmp(&b.1.1)));
        Ok(PrefetchRecord {
            layers: self.layers.clone(),
            chunks: chunks.into_iter().map(|(chunk, _)| chunk).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let r = PrefetchRecord {
            layers: vec!["sha256:aa".into()],
            chunks: vec![(0, 3), (0, 1)],
        };
        assert_eq!(PrefetchRecord::decode(&r.encode()).unwrap(), r);
        assert!(PrefetchRecord::decode(b"{\"layers\":1}").is_err());
        assert!(PrefetchRecord::decode(b"\xff").is_err());
    }

    #[test]
    fn merge_interleaves_by_progress_and_keeps_each_chunk_once() {
        let layers = vec!["sha256:aa".to_owned(), "sha256:bb".to_owned()];
        let a = PrefetchRecord {
            layers: layers.clone(),
            chunks: vec![(0, 1), (0, 2), (1, 7), (0, 3)],
        };
        let b = PrefetchRecord {
            layers: layers.clone(),
            chunks: vec![(0, 9), (0, 3)],
        };
        let merged = a.merge(&b).unwrap();
        assert_eq!(merged.layers, layers);
        // Progress: a 0, .25, .5, .75; b 0, .5 (its (0, 3) beats a's .75).
        assert_eq!(merged.chunks, vec![(0, 1), (0, 9), (0, 2), (1, 7), (0, 3)]);
        assert_eq!(a.merge(&a).unwrap(), a, "merging a record with itself");
        let other = PrefetchRecord {
            layers: vec!["sha256:cc".into()],
            chunks: vec![(0, 1)],
        };
        assert!(a.merge(&other).is_err());
    }
}

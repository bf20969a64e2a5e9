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
}

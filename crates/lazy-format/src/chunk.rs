//! Chunk encoding: one zstd frame per chunk, raw where compression does not pay.

use std::collections::HashMap;

use crate::{ChunkDigest, ChunkRecord, Compression, FormatError, MAX_CHUNK_SIZE};

/// A chunk ready to be appended to a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    /// sha256 of the uncompressed bytes.
    pub digest: ChunkDigest,
    /// Uncompressed length.
    pub size: u32,
    /// How `bytes` is encoded.
    pub compression: Compression,
    /// The bytes to store.
    pub bytes: Vec<u8>,
}

/// Hashes and compresses one chunk at zstd `level`; keeps it raw unless
/// compression saves at least 1/16 of it.
///
/// # Panics
/// Panics if `data` is longer than [`MAX_CHUNK_SIZE`]: callers cut chunks.
pub fn encode_chunk(data: &[u8], level: i32) -> EncodedChunk {
    let size = u32::try_from(data.len())
        .ok()
        .filter(|s| *s <= MAX_CHUNK_SIZE)
        .expect("chunk larger than MAX_CHUNK_SIZE");
    let digest = ChunkDigest::of(data);
    // Compressing into memory cannot fail for in-range levels; fall back to raw
    // rather than lose data if it ever does.
    let compressed = zstd::bulk::compress(data, level).ok();
    match compressed {
        Some(c) if c.len() < data.len() - data.len() / 16 => EncodedChunk {
            digest,
            size,
            compression: Compression::Zstd,
            bytes: c,
        },
        _ => EncodedChunk {
            digest,
            size,
            compression: Compression::None,
            bytes: data.to_vec(),
        },
    }
}

/// Decodes the stored bytes of `record` and checks them against its digest.
/// Only verified bytes are ever returned.
pub fn decode_chunk(record: &ChunkRecord, stored: &[u8]) -> Result<Vec<u8>, FormatError> {
    if stored.len() as u64 != u64::from(record.stored_len) {
        return Err(FormatError::Truncated {
            what: "chunk",
            need: u64::from(record.stored_len),
            have: stored.len() as u64,
        });
    }
    let data = match record.compression {
        Compression::None => stored.to_vec(),
        Compression::Zstd => {
            let cap = usize::try_from(record.size.min(MAX_CHUNK_SIZE)).unwrap_or(0);
            zstd::bulk::decompress(stored, cap).map_err(|e| FormatError::ChunkCompression {
                digest: record.digest,
                reason: e.to_string(),
            })?
        }
    };
    let actual = ChunkDigest::of(&data);
    if actual != record.digest || data.len() as u64 != u64::from(record.size) {
        return Err(FormatError::ChunkDigestMismatch {
            expected: record.digest,
            actual,
        });
    }
    Ok(data)
}

/// The chunk table of a layer being built: stores each distinct chunk once.
#[derive(Debug, Default)]
pub struct ChunkTable {
    records: Vec<ChunkRecord>,
    by_digest: HashMap<ChunkDigest, u32>,
    data_len: u64,
}

impl ChunkTable {
    /// An empty table for a blob whose chunk data starts at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the chunk's index, and whether its bytes are new and must be
    /// appended to the blob now (at the current end of the chunk data).
    pub fn insert(&mut self, chunk: &EncodedChunk) -> (u32, bool) {
        if let Some(index) = self.by_digest.get(&chunk.digest) {
            return (*index, false);
        }
        let index = u32::try_from(self.records.len()).expect("more than 4G chunks in one layer");
        let stored_len = u32::try_from(chunk.bytes.len()).expect("chunk larger than 4 GiB");
        self.records.push(ChunkRecord {
            digest: chunk.digest,
            offset: self.data_len,
            stored_len,
            size: chunk.size,
            compression: chunk.compression,
        });
        self.by_digest.insert(chunk.digest, index);
        self.data_len += u64::from(stored_len);
        (index, true)
    }

    /// Bytes of chunk data so far: the metadata's offset in the blob.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The finished table.
    pub fn into_records(self) -> Vec<ChunkRecord> {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_chunk_round_trips() {
        let data = vec![7u8; 100_000];
        let enc = encode_chunk(&data, 3);
        assert_eq!(enc.compression, Compression::Zstd);
        assert!(enc.bytes.len() < 1000);
        let rec = record_for(&enc);
        assert_eq!(decode_chunk(&rec, &enc.bytes).unwrap(), data);
    }

    #[test]
    fn incompressible_chunk_is_stored_raw() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let enc = encode_chunk(&data, 3);
        assert_eq!(enc.compression, Compression::None);
        assert_eq!(decode_chunk(&record_for(&enc), &enc.bytes).unwrap(), data);
    }

    #[test]
    fn corrupt_chunk_is_rejected() {
        let enc = encode_chunk(b"hello hello hello hello hello hello", 3);
        let mut bytes = enc.bytes.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(decode_chunk(&record_for(&enc), &bytes).is_err());
    }

    #[test]
    fn table_dedups() {
        let mut table = ChunkTable::new();
        let a = encode_chunk(b"aaaa", 3);
        let b = encode_chunk(b"bbbb", 3);
        assert_eq!(table.insert(&a), (0, true));
        assert_eq!(table.insert(&b), (1, true));
        assert_eq!(table.insert(&a), (0, false));
        assert_eq!(table.data_len(), 8);
        assert_eq!(table.into_records()[1].offset, 4);
    }

    fn record_for(enc: &EncodedChunk) -> ChunkRecord {
        ChunkRecord {
            digest: enc.digest,
            offset: 0,
            stored_len: u32::try_from(enc.bytes.len()).unwrap(),
            size: enc.size,
            compression: enc.compression,
        }
    }
}

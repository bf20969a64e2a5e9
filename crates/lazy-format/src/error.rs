use crate::ChunkDigest;

/// Why a lazy layer blob, or a piece of one, was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The input is shorter than the structure it must contain.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure was cut short.
        what: &'static str,
        /// Bytes the structure needs.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// The footer does not start with the lazyfs magic: not a lazy layer.
    #[error("not a lazyfs layer: bad footer magic")]
    BadMagic,
    /// A format version this decoder does not know.
    #[error(
        "unsupported lazyfs layer format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// Version in the footer.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Offsets or lengths that do not fit the blob.
    #[error("layout error: {0}")]
    Layout(&'static str),
    /// The metadata section does not hash to the footer's sha256.
    #[error("metadata checksum mismatch")]
    MetaChecksum,
    /// The metadata section could not be decompressed.
    #[error("metadata decompression failed: {0}")]
    MetaCompression(String),
    /// The decompressed metadata is not a valid encoding.
    #[error("metadata decoding failed: {0}")]
    MetaEncoding(String),
    /// Metadata that decodes but breaks an invariant (path rules, references).
    #[error("invalid metadata at entry {path:?}: {reason}")]
    InvalidEntry {
        /// The entry's path, lossily printed.
        path: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The chunk table breaks an invariant.
    #[error("invalid chunk #{index}: {reason}")]
    InvalidChunk {
        /// Index in the chunk table.
        index: usize,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A chunk's bytes could not be decompressed.
    #[error("chunk {digest} does not decompress: {reason}")]
    ChunkCompression {
        /// The chunk.
        digest: ChunkDigest,
        /// Decompressor message.
        reason: String,
    },
    /// A chunk's bytes do not hash to its digest.
    #[error("chunk {expected} failed verification: content hashes to {actual}")]
    ChunkDigestMismatch {
        /// Digest recorded in the metadata.
        expected: ChunkDigest,
        /// Digest of the bytes received.
        actual: ChunkDigest,
    },
}

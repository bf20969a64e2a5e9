//! The lazyfs lazy layer blob, format version 1.
//!
//! A lazy layer blob is `[chunk data][metadata][footer]`:
//!
//! * **chunk data**: every distinct chunk of file content once, each one zstd
//!   frame, or stored raw where compression does not pay;
//! * **metadata**: one zstd-compressed [`LayerMeta`] describing every entry of
//!   the layer and the chunk table;
//! * **footer**: [`FOOTER_LEN`] bytes with magic, version, and the metadata's
//!   offset, lengths and sha256.
//!
//! This crate is pure: it turns bytes into types and back, and checks them. It
//! does no I/O, so everything read from a registry can be handed to it as
//! untrusted input; malformed input is a typed [`FormatError`], never a panic.

mod chunk;
mod codec;
mod digest;
mod error;
mod footer;
mod meta;
mod path;
mod prefetch;
mod validate;

pub use chunk::{ChunkTable, EncodedChunk, decode_chunk, encode_chunk};
pub use codec::{LayerTail, decode_meta, decode_tail, encode_tail, verify_blob};
pub use digest::ChunkDigest;
pub use error::FormatError;
pub use footer::{FOOTER_LEN, FORMAT_VERSION, Footer, MAGIC};
pub use meta::{
    ChunkRecord, Compression, DeviceKind, Entry, EntryKind, LayerMeta, LayerStats, Xattr,
};
pub use path::{EntryPath, parent_of};
pub use prefetch::{MAX_PREFETCH_RECORD, PREFETCH_MEDIA_TYPE, PrefetchRecord};

/// Media type of a lazy layer blob in an OCI manifest.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.lazyfs.layer.v1";
/// Manifest annotation marking a lazy image, with the format version as value.
pub const FORMAT_ANNOTATION: &str = "dev.lazyfs.format";
/// Layer descriptor annotation: byte offset of `[metadata][footer]` in the blob.
pub const META_OFFSET_ANNOTATION: &str = "dev.lazyfs.meta.offset";
/// Layer descriptor annotation: byte length of `[metadata][footer]`.
pub const META_LENGTH_ANNOTATION: &str = "dev.lazyfs.meta.length";
/// Largest uncompressed chunk a decoder accepts (bounds memory per read).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Largest uncompressed metadata a decoder accepts (bounds memory per layer).
pub const MAX_META_SIZE: u64 = 1 << 30;

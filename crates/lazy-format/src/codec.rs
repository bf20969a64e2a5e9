//! Whole-layer encoding: metadata + footer, and decoding/verifying a blob.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::validate::validate;
use crate::{FOOTER_LEN, Footer, FormatError, LayerMeta, MAX_META_SIZE, decode_chunk};

/// zstd level for the metadata section: small and read once per attach.
const META_ZSTD_LEVEL: i32 = 12;

/// The end of a lazy layer blob, to append after its chunk data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerTail {
    /// `[metadata][footer]` bytes.
    pub bytes: Vec<u8>,
    /// The footer inside `bytes`.
    pub footer: Footer,
}

/// Validates `meta` and encodes the blob tail for chunk data of `data_len`
/// bytes. Invalid metadata is refused here, so no writer produces a blob a
/// reader would reject.
pub fn encode_tail(meta: &LayerMeta, data_len: u64) -> Result<LayerTail, FormatError> {
    validate(meta, data_len)?;
    let raw = postcard::to_stdvec(meta).map_err(|e| FormatError::MetaEncoding(e.to_string()))?;
    let compressed = zstd::bulk::compress(&raw, META_ZSTD_LEVEL)
        .map_err(|e| FormatError::MetaCompression(e.to_string()))?;
    let footer = Footer {
        meta_offset: data_len,
        meta_len: compressed.len() as u64,
        meta_size: raw.len() as u64,
        meta_sha256: Sha256::digest(&compressed).into(),
    };
    let mut bytes = compressed;
    bytes.extend_from_slice(&footer.encode());
    Ok(LayerTail { bytes, footer })
}

/// Decodes the metadata from a blob's tail: the bytes from the metadata
/// offset to the end, for a blob of `blob_len` bytes. This is what one range
/// read at the descriptor's `dev.lazyfs.meta.*` annotations returns.
pub fn decode_tail(tail: &[u8], blob_len: u64) -> Result<LayerMeta, FormatError> {
    let (meta_bytes, footer_bytes) = tail
        .split_at_checked(tail.len().wrapping_sub(FOOTER_LEN))
        .filter(|_| tail.len() >= FOOTER_LEN)
        .ok_or(FormatError::Truncated {
            what: "layer tail",
            need: FOOTER_LEN as u64,
            have: tail.len() as u64,
        })?;
    let footer = Footer::decode(footer_bytes)?;
    if footer.blob_len() != Some(blob_len) {
        return Err(FormatError::Layout(
            "footer offsets do not match the blob length",
        ));
    }
    if meta_bytes.len() as u64 != footer.meta_len {
        return Err(FormatError::Truncated {
            what: "metadata",
            need: footer.meta_len,
            have: meta_bytes.len() as u64,
        });
    }
    if <[u8; 32]>::from(Sha256::digest(meta_bytes)) != footer.meta_sha256 {
        return Err(FormatError::MetaChecksum);
    }
    if footer.meta_size > MAX_META_SIZE {
        return Err(FormatError::Layout("metadata larger than 1 GiB"));
    }
    let raw = decompress_bounded(meta_bytes, footer.meta_size)?;
    let (meta, rest): (LayerMeta, _) =
        postcard::take_from_bytes(&raw).map_err(|e| FormatError::MetaEncoding(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::MetaEncoding(
            "trailing bytes after metadata".into(),
        ));
    }
    validate(&meta, footer.meta_offset)?;
    Ok(meta)
}

/// Decodes the metadata of a whole blob held in memory.
pub fn decode_meta(blob: &[u8]) -> Result<LayerMeta, FormatError> {
    let footer_at = blob
        .len()
        .checked_sub(FOOTER_LEN)
        .ok_or(FormatError::Truncated {
            what: "blob",
            need: FOOTER_LEN as u64,
            have: blob.len() as u64,
        })?;
    let footer = Footer::decode(&blob[footer_at..])?;
    let start = usize::try_from(footer.meta_offset)
        .ok()
        .filter(|s| *s <= footer_at)
        .ok_or(FormatError::Layout("metadata offset beyond the blob"))?;
    decode_tail(&blob[start..], blob.len() as u64)
}

/// Decodes a whole blob and verifies every chunk against its digest.
pub fn verify_blob(blob: &[u8]) -> Result<LayerMeta, FormatError> {
    let meta = decode_meta(blob)?;
    for record in &meta.chunks {
        // validate() has checked every chunk range lies within the chunk data.
        let start =
            usize::try_from(record.offset).map_err(|_| FormatError::Layout("chunk offset"))?;
        let end = usize::try_from(record.end()).map_err(|_| FormatError::Layout("chunk end"))?;
        decode_chunk(record, &blob[start..end])?;
    }
    Ok(meta)
}

/// Decompresses exactly `size` bytes, never allocating past what the input
/// really expands to (a small input cannot claim a huge buffer).
fn decompress_bounded(input: &[u8], size: u64) -> Result<Vec<u8>, FormatError> {
    let mut decoder = zstd::stream::read::Decoder::new(input)
        .map_err(|e| FormatError::MetaCompression(e.to_string()))?;
    let mut out = Vec::new();
    (&mut decoder)
        .take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| FormatError::MetaCompression(e.to_string()))?;
    if out.len() as u64 != size {
        return Err(FormatError::MetaCompression(format!(
            "metadata decompressed to {} bytes, footer says {size}",
            out.len()
        )));
    }
    Ok(out)
}

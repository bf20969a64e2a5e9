//! Relaying out a lazy layer: the same entries and chunk table, with the
//! chunk data reordered so that chunks read together sit together in the
//! blob (in the order a recorded run first read them). A start that reads
//! them then needs a few long range requests instead of one per file, and
//! a read that fetches around itself brings what the next reads want.
//!
//! Chunk indices do not change, so file entries and prefetch records that
//! name chunks by index stay valid; only offsets, and so the blob's
//! digest, change.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use lazy_format::LayerMeta;

use crate::error::{ConvertError, Result};
use crate::layer::{ConvertedLayer, HashingWriter, finish_layer};

/// Chunk table indices in their new blob order: `first` (duplicates and
/// indices out of range dropped), then every other chunk in its current
/// blob order, which is the layer's tar order (directory by directory).
pub fn chunk_order(meta: &LayerMeta, first: &[u32]) -> Vec<u32> {
    let count = meta.chunks.len();
    let mut placed = vec![false; count];
    let mut order = Vec::with_capacity(count);
    for &index in first {
        if let Some(done) = placed.get_mut(index as usize)
            && !*done
        {
            *done = true;
            order.push(index);
        }
    }
    // Chunk indices are u32 in the format, so they fit.
    let mut rest: Vec<u32> = (0u32..)
        .zip(&placed)
        .filter(|(_, done)| !**done)
        .map(|(i, _)| i)
        .collect();
    rest.sort_by_key(|&i| meta.chunks[i as usize].offset);
    order.extend(rest);
    order
}

/// Writes to `out` the layer whose verified blob is `blob` (metadata
/// `meta`), its chunk data in the order of [`chunk_order`]. `layer` names
/// it in errors.
pub fn relayout_layer<W: Write>(
    blob: &File,
    meta: &LayerMeta,
    first: &[u32],
    out: W,
    layer: &str,
) -> Result<ConvertedLayer> {
    let read_err = ConvertError::read(layer);
    let write_err = ConvertError::write(layer);
    let mut out = HashingWriter::new(out);
    let mut relaid = meta.clone();
    let mut buf = Vec::new();
    for index in chunk_order(meta, first) {
        let record = &mut relaid.chunks[index as usize];
        buf.resize(record.stored_len as usize, 0);
        blob.read_exact_at(&mut buf, record.offset)
            .map_err(read_err)?;
        record.offset = out.written;
        out.write_all(&buf).map_err(write_err)?;
    }
    let meta_offset = out.written;
    finish_layer(out, relaid, meta_offset, layer)
}

//! The `info` file of a layer in the additional layer store: the layer
//! record containers/storage (v1.43, Podman 4.3) imports as it is, except
//! for the ID, parent and creation time it sets itself.

use serde::Serialize;

use crate::fuse::layer::AttachedLayer;

/// The fields of containers/storage's `Layer` that a pull reads.
#[derive(Debug, Serialize)]
struct LayerRecord<'a> {
    /// The blob's digest, as the manifest lists it.
    #[serde(rename = "compressed-diff-digest")]
    compressed_digest: &'a str,
    /// The blob's size.
    #[serde(rename = "compressed-size")]
    compressed_size: u64,
    /// The layer's "uncompressed" digest, from which storage derives the
    /// layer ID. A lazy image's config lists the lazy blob's digest as the
    /// diff ID (see DESIGN.md), so it is the blob digest again.
    #[serde(rename = "diff-digest")]
    diff_digest: &'a str,
    /// The size `podman images` adds up: the layer's file bytes.
    #[serde(rename = "diff-size")]
    diff_size: u64,
    /// 0: storage hands `blob` out as it is (a lazy blob, not a tar).
    compression: u8,
    /// Owners that appear in the layer, for `--userns=auto` sizing.
    uidset: Vec<u32>,
    gidset: Vec<u32>,
}

/// The JSON of `layer`'s `info` file.
pub fn layer_info(layer: &AttachedLayer) -> Vec<u8> {
    let mut uids: Vec<u32> = layer.meta.entries.iter().map(|e| e.uid).collect();
    let mut gids: Vec<u32> = layer.meta.entries.iter().map(|e| e.gid).collect();
    for ids in [&mut uids, &mut gids] {
        ids.sort_unstable();
        ids.dedup();
    }
    let record = LayerRecord {
        compressed_digest: &layer.digest,
        compressed_size: layer.blob_size,
        diff_digest: &layer.digest,
        diff_size: layer.meta.stats().file_bytes,
        compression: 0,
        uidset: uids,
        gidset: gids,
    };
    serde_json::to_vec(&record).expect("a layer record always serializes")
}

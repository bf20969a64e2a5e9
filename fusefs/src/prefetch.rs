//! Fetching ahead of readers: a recorded startup set first, all at once and
//! in parallel; optionally the rest of the image, one batch at a time.

use std::sync::Arc;

use lazy_cache::ChunkCache;
use lazy_format::{ChunkRecord, PrefetchRecord};

use crate::layer::AttachedLayer;

/// Span of one background batch when fetching whole layers.
const BATCH_BYTES: u64 = 8 << 20;

/// What to fetch after an attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefetchMode {
    /// Nothing: fetch on first read only.
    None,
    /// The image's prefetch record, if it has one.
    #[default]
    Record,
    /// The record, then every other chunk of the image at low priority.
    All,
}

/// Fetches the chunks of `record` for `layers` (manifest order); all
/// layers at once, each coalesced by the cache. Returns chunks fetched or found.
pub async fn prefetch_record(
    cache: &ChunkCache,
    layers: &[Arc<AttachedLayer>],
    record: &PrefetchRecord,
) -> usize {
    let digests: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    if record
        .layers
        .iter()
        .map(String::as_str)
        .ne(digests.iter().copied())
    {
        tracing::warn!("prefetch record does not match the image's layers; ignored");
        return 0;
    }
    let jobs = layers.iter().enumerate().map(|(position, layer)| {
        let wanted: Vec<ChunkRecord> = record
            .chunks
            .iter()
            .filter(|(l, _)| *l as usize == position)
            .filter_map(|(_, c)| layer.meta.chunks.get(*c as usize).copied())
            .collect();
        async move {
            let n = wanted.len();
            match cache.ensure(&layer.source, &wanted).await {
                Ok(_) => n,
                Err(e) => {
                    tracing::warn!(layer = %layer.digest, "prefetch failed: {e}");
                    0
                }
            }
        }
    });
    futures_util::future::join_all(jobs).await.into_iter().sum()
}

/// Fetches every chunk of `layers`, in blob order, one batch at a time so
/// that readers' fetches are not starved.
pub async fn prefetch_all(cache: &ChunkCache, layers: &[Arc<AttachedLayer>]) {
    for layer in layers {
        let mut records = layer.meta.chunks.clone();
        records.sort_by_key(|r| r.offset);
        let mut start = 0;
        while start < records.len() {
            let first = records[start].offset;
            let end = records[start..]
                .iter()
                .position(|r| r.end() - first > BATCH_BYTES)
                .map_or(records.len(), |n| start + n.max(1));
            let batch: Vec<ChunkRecord> = records[start..end]
                .iter()
                .filter(|r| !cache.contains(&r.digest))
                .copied()
                .collect();
            if !batch.is_empty()
                && let Err(e) = cache.ensure(&layer.source, &batch).await
            {
                tracing::warn!(layer = %layer.digest, "background prefetch stopped: {e}");
                return;
            }
            start = end;
        }
    }
}

//! Fetching ahead of readers: a recorded startup set first, in read order
//! and as far ahead as readers follow it; optionally the rest of the
//! image, one batch at a time.

use std::sync::Arc;

use lazy_cache::ChunkCache;
use lazy_format::{ChunkRecord, PrefetchRecord};

use crate::fuse::layer::AttachedLayer;

/// Span of one background batch when fetching whole layers.
const BATCH_BYTES: u64 = 8 << 20;

/// Stored bytes of one prefetch wave: a few round trips' worth of data on a
/// slow link, so that the chunks read first arrive first.
const WAVE_BYTES: u64 = 1 << 20;
/// Waves in flight at once: enough to keep a long fat pipe busy.
const WAVES_IN_FLIGHT: usize = 4;

/// Fetches the chunks of `record` for `layers` (manifest order) in the
/// order they were first read: cut into waves of about `WAVE_BYTES`,
/// `WAVES_IN_FLIGHT` at a time, each wave coalesced by the cache. Fetching
/// everything at once would share the link evenly and make the first reads
/// wait for the whole set. Waves go as far ahead as readers follow the
/// record and stop once they disagree with it (see
/// [`ChunkCache::fetch_guess`]). Returns chunks fetched or found.
pub async fn prefetch_record(
    cache: &ChunkCache,
    layers: &[Arc<AttachedLayer>],
    record: &PrefetchRecord,
) -> usize {
    use futures_util::stream::{self, StreamExt as _};
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
    let waves = waves(layers, record);
    let agreement = cache.watch_guess(waves.iter().flat_map(|(_, w)| w.iter()));
    let mut at = 0;
    let waves: Vec<_> = waves
        .into_iter()
        .map(|(layer, wanted)| {
            let start = at;
            at += wanted.iter().map(|c| u64::from(c.stored_len)).sum::<u64>();
            (layer, wanted, start)
        })
        .collect();
    let fetched: Vec<usize> = stream::iter(waves)
        .map(|(layer, wanted, at)| {
            let (cache, agreement) = (cache.clone(), Arc::clone(&agreement));
            async move {
                // Only as far ahead as readers follow, and dropped once
                // they disagree (see lazy_cache::Agreement).
                match cache
                    .fetch_guess(&layer.source, &wanted, &agreement, at)
                    .await
                {
                    Ok(Some(_)) => wanted.len(),
                    Ok(None) => 0,
                    Err(e) => {
                        tracing::warn!(layer = %layer.digest, "prefetch failed: {e}");
                        0
                    }
                }
            }
        })
        .buffered(WAVES_IN_FLIGHT)
        .collect()
        .await;
    let (inside, outside) = agreement.counts();
    tracing::debug!(
        inside,
        outside,
        followed = agreement.followed(),
        "readers' own fetches, inside and outside the record; bytes of it read"
    );
    fetched.into_iter().sum()
}

/// The record's chunks in read order, cut into per-layer waves: a wave
/// ends at [`WAVE_BYTES`] or where the next chunk is in another layer.
fn waves(
    layers: &[Arc<AttachedLayer>],
    record: &PrefetchRecord,
) -> Vec<(Arc<AttachedLayer>, Vec<ChunkRecord>)> {
    let mut waves: Vec<(Arc<AttachedLayer>, Vec<ChunkRecord>)> = Vec::new();
    let mut wave_bytes = 0;
    for &(position, index) in &record.chunks {
        let Some(layer) = layers.get(position as usize) else {
            continue;
        };
        let Some(chunk) = layer.meta.chunks.get(index as usize).copied() else {
            continue;
        };
        match waves.last_mut() {
            Some((l, wave)) if Arc::ptr_eq(l, layer) && wave_bytes < WAVE_BYTES => {
                wave.push(chunk);
            }
            _ => {
                waves.push((Arc::clone(layer), vec![chunk]));
                wave_bytes = 0;
            }
        }
        wave_bytes += u64::from(chunk.stored_len);
    }
    waves
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
                && let Err(e) = cache.fetch_when_idle(&layer.source, &batch).await
            {
                tracing::warn!(layer = %layer.digest, "background prefetch stopped: {e}");
                return;
            }
            start = end;
        }
    }
}

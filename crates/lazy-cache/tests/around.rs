//! Reads that fetch around themselves: the chunks after a miss come in the
//! same request, a failure among them does not fail the read, and chunks
//! cached or being fetched are left out.

mod common;

use std::sync::Arc;

use lazy_cache::ChunkSource;

use common::*;

#[tokio::test]
async fn neighbours_come_in_the_same_request_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..6).map(|n| chunk(n, 10_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let around = cache.absent(&blob.records[1..4]);
    assert_eq!(around.len(), 3, "nothing cached yet");
    let data = cache
        .read_around(&source, &blob.records[0..1], 10, 20, &around)
        .await
        .unwrap();
    assert_eq!(data, chunks[0][10..30]);
    assert_eq!(
        blob.request_count(),
        1,
        "one request for the read and its neighbours"
    );
    let fetched = blob.requests.lock().unwrap()[0].clone();
    assert_eq!(fetched, blob.records[0].offset..blob.records[3].end());
    cache.settled().await;
    assert!(
        cache.absent(&blob.records[0..4]).is_empty(),
        "all four cached"
    );
    assert_eq!(cache.absent(&blob.records[3..6]), blob.records[4..6]);
    // Reading a neighbour now costs no request.
    let data = cache
        .read(&source, &blob.records[2..3], 0, 10_000)
        .await
        .unwrap();
    assert_eq!(data, chunks[2]);
    assert_eq!(blob.request_count(), 1);
}

#[tokio::test]
async fn a_corrupt_neighbour_does_not_fail_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..3).map(|n| chunk(n, 10_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let bad = usize::try_from(blob.records[2].offset).unwrap() + 1;
    *blob.corrupt_at.lock().unwrap() = Some(bad);
    let around = cache.absent(&blob.records[1..3]);
    let data = cache
        .read_around(&source, &blob.records[0..1], 0, 10_000, &around)
        .await
        .unwrap();
    assert_eq!(data, chunks[0], "the read itself is good");
    cache.settled().await;
    assert_eq!(
        cache.absent(&blob.records[0..3]),
        blob.records[2..3],
        "the corrupt neighbour is not cached, the good ones are"
    );
}

#[test]
fn read_around_is_off_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    assert_eq!(cache.read_around_bytes(), 0);
}

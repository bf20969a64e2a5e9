//! Reads through the cache against an in-memory blob source: fetch once,
//! coalesce, concurrency, corruption, timeouts, quota, storage failures.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lazy_cache::{CacheError, ChunkSource};

use common::*;

#[tokio::test]
async fn reads_fetch_only_what_they_need_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, registry) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..8).map(|n| chunk(n, 10_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let data = cache
        .read(&source, &blob.records[5..6], 100, 50)
        .await
        .unwrap();
    assert_eq!(data, chunks[5][100..150]);
    assert_eq!(blob.request_count(), 1);
    cache.settled().await;
    let r = blob.records[5];
    assert_eq!(
        blob.requests.lock().unwrap()[0],
        r.offset..r.end(),
        "only chunk 5 was fetched"
    );
    // Across a chunk boundary, the cached chunk is a hit, chunk 6 a fetch.
    let data = cache
        .read(&source, &blob.records[5..7], 9_990, 20)
        .await
        .unwrap();
    assert_eq!(data[..10], chunks[5][9_990..]);
    assert_eq!(data[10..], chunks[6][..10]);
    assert_eq!(blob.request_count(), 2);
    assert_eq!(metric(&registry, "lazyfs_cache_hits_total"), 1.0);
    assert_eq!(metric(&registry, "lazyfs_fetched_chunks_total"), 2.0);
}

#[tokio::test]
async fn adjacent_misses_coalesce_into_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..6).map(|n| chunk(n, 20_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let data = cache
        .read(&source, &blob.records, 0, 120_000)
        .await
        .unwrap();
    assert_eq!(data, chunks.concat());
    assert_eq!(blob.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_fetch_each_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..16).map(|n| chunk(n, 8_000)).collect();
    let mut blob = MemoryBlob::new(&chunks);
    blob.delay = Duration::from_millis(50);
    let blob = Arc::new(blob);
    let source: Arc<dyn ChunkSource> = blob.clone();
    let readers: Vec<_> = (0..16)
        .map(|i| {
            let (cache, source, records) =
                (cache.clone(), Arc::clone(&source), blob.records.clone());
            tokio::spawn(async move {
                // Each reader walks all chunks from a different start.
                let mut out = HashMap::new();
                for k in 0..16 {
                    let c = (i + k) % 16;
                    out.insert(
                        c,
                        cache
                            .read(&source, &records[c..=c], 0, 8_000)
                            .await
                            .unwrap(),
                    );
                }
                out
            })
        })
        .collect();
    for r in readers {
        let got = r.await.unwrap();
        for (c, data) in got {
            assert_eq!(data, chunks[c]);
        }
    }
    let mut fetched: Vec<u64> = blob
        .requests
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| {
            blob.records
                .iter()
                .filter(|c| c.offset >= r.start && c.end() <= r.end)
                .map(|c| c.offset)
                .collect::<Vec<_>>()
        })
        .collect();
    let total = fetched.len();
    fetched.sort();
    fetched.dedup();
    assert_eq!(total, fetched.len(), "no chunk fetched twice");
    assert_eq!(fetched.len(), 16);
}

#[tokio::test]
async fn corrupt_bytes_are_an_error_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, registry) = open(dir.path(), u64::MAX);
    let chunks = vec![chunk(1, 5_000)];
    let blob = Arc::new(MemoryBlob::new(&chunks));
    blob.corrupt.store(true, Ordering::SeqCst);
    let source: Arc<dyn ChunkSource> = blob.clone();
    let err = cache.read(&source, &blob.records, 0, 10).await.unwrap_err();
    assert!(matches!(err, CacheError::Verification { .. }), "{err}");
    assert!(!cache.contains(&blob.records[0].digest));
    assert_eq!(metric(&registry, "lazyfs_verification_failures_total"), 1.0);
    blob.corrupt.store(false, Ordering::SeqCst);
    assert_eq!(
        cache.read(&source, &blob.records, 0, 10).await.unwrap(),
        chunks[0][..10]
    );
}

#[tokio::test]
async fn slow_source_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let mut blob = MemoryBlob::new(&[chunk(1, 100)]);
    blob.delay = Duration::from_secs(5);
    let blob = Arc::new(blob);
    let source: Arc<dyn ChunkSource> = blob.clone();
    let started = std::time::Instant::now();
    let err = cache.read(&source, &blob.records, 0, 10).await.unwrap_err();
    assert!(matches!(err, CacheError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn quota_holds_and_readers_keep_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, registry) = open(dir.path(), 50_000);
    let chunks: Vec<Vec<u8>> = (0..20).map(|n| chunk(n, 10_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    // A reader holds chunk 0 while others read past the quota.
    let held = cache.ensure(&source, &blob.records[0..1]).await.unwrap();
    cache.settled().await;
    for (c, expected) in chunks.iter().enumerate().skip(1) {
        let got = cache
            .read(&source, &blob.records[c..=c], 0, 10_000)
            .await
            .unwrap();
        assert_eq!(&got, expected);
        cache.settled().await;
        assert!(
            cache.contains(&blob.records[0].digest),
            "a chunk being read is never evicted"
        );
    }
    drop(held);
    cache.settled().await;
    assert!(
        cache.usage().0 <= 50_000,
        "within quota: {:?}",
        cache.usage()
    );
    assert!(metric(&registry, "lazyfs_cache_evictions_total") >= 15.0);
    // Evicted chunks read correctly again.
    assert_eq!(
        cache
            .read(&source, &blob.records[1..2], 0, 10_000)
            .await
            .unwrap(),
        chunks[1]
    );
}

#[tokio::test]
async fn chunks_stored_before_a_failure_in_the_same_run_stay_evictable() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..3).map(|n| chunk(n, 5_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    *blob.corrupt_at.lock().unwrap() = Some(usize::try_from(blob.records[2].offset).unwrap());
    let source: Arc<dyn ChunkSource> = blob.clone();
    let err = cache
        .read(&source, &blob.records, 0, 15_000)
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Verification { .. }), "{err}");
    assert_eq!(blob.request_count(), 1, "one coalesced run");
    cache.settled().await;
    assert!(cache.contains(&blob.records[0].digest) && !cache.contains(&blob.records[2].digest));
    assert_eq!(
        cache.gc(0).0,
        2,
        "the good chunks of the failed run are not left held"
    );
}

#[tokio::test]
async fn reads_are_served_when_the_chunk_cannot_be_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = open(dir.path(), u64::MAX);
    let chunks: Vec<Vec<u8>> = (0..2).map(|n| chunk(n, 8_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    // The chunk directory cannot be written: storing fails, reading does not.
    let path = cache.chunk_path(&blob.records[0].digest);
    let fanout = path.parent().unwrap();
    std::fs::create_dir_all(fanout.parent().unwrap()).unwrap();
    std::fs::write(fanout, b"not a directory").unwrap();
    let data = cache
        .read(&source, &blob.records[0..1], 0, 8_000)
        .await
        .unwrap();
    assert_eq!(data, chunks[0]);
    cache.settled().await;
    assert!(
        !cache.contains(&blob.records[0].digest),
        "could not be stored"
    );
    assert_eq!(
        cache
            .read(&source, &blob.records[0..1], 0, 8_000)
            .await
            .unwrap(),
        chunks[0],
        "fetched again, served again"
    );
    assert_eq!(blob.request_count(), 2);
}

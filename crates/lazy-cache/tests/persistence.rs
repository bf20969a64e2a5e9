//! What a restart keeps: files and index reconciled, LRU order.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lazy_cache::ChunkSource;

use common::*;

#[tokio::test]
async fn restart_reconciles_files_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<Vec<u8>> = (0..3).map(|n| chunk(n, 1_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let paths: Vec<_>;
    {
        let (cache, _) = open(dir.path(), u64::MAX);
        cache.read(&source, &blob.records, 0, 3_000).await.unwrap();
        cache.settled().await;
        paths = blob
            .records
            .iter()
            .map(|r| cache.chunk_path(&r.digest))
            .collect();
    }
    std::fs::remove_file(&paths[0]).unwrap(); // index entry without file
    std::fs::write(&paths[1], b"garbage").unwrap(); // wrong size
    let stray = paths[2].with_extension("99.tmp");
    std::fs::write(&stray, b"partial").unwrap(); // interrupted write
    let (cache, _) = open(dir.path(), u64::MAX);
    assert!(!cache.contains(&blob.records[0].digest));
    assert!(!cache.contains(&blob.records[1].digest));
    assert!(cache.contains(&blob.records[2].digest));
    assert!(!stray.exists());
    let (checked, bad) = cache.verify();
    assert_eq!((checked, bad.len()), (1, 0));
    let before = blob.request_count();
    assert_eq!(
        cache.read(&source, &blob.records, 0, 3_000).await.unwrap(),
        chunks.concat()
    );
    assert_eq!(
        blob.request_count(),
        before + 1,
        "the two lost chunks are refetched together"
    );
}

#[tokio::test]
async fn lru_order_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<Vec<u8>> = (0..3).map(|n| chunk(n, 10_000)).collect();
    let blob = Arc::new(MemoryBlob::new(&chunks));
    let source: Arc<dyn ChunkSource> = blob.clone();
    let records = &blob.records;
    {
        let (cache, _) = open(dir.path(), u64::MAX);
        // Stored in the order 0, 1, 2; then 0 is read again: 1 is the least
        // recently used. Times are in ms: keep the steps apart.
        for r in [
            &records[0..1],
            &records[1..2],
            &records[2..3],
            &records[0..1],
        ] {
            cache.read(&source, r, 0, 10).await.unwrap();
            cache.settled().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.persist_use_times().unwrap(), 1, "one hit to persist");
    }
    // Room for two: reopening evicts the least recently used one.
    let (cache, _) = open(dir.path(), 20_000);
    assert!(
        !cache.contains(&records[1].digest),
        "1 was least recently used"
    );
    assert!(cache.contains(&records[0].digest) && cache.contains(&records[2].digest));
}

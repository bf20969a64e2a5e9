//! Whole-file copies of fully cached files, for passthrough.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lazy_cache::ChunkSource;

use common::*;

/// Waits (bounded) until no file is queued for assembly.
fn wait_for_assembly(registry: &prometheus::Registry) {
    for _ in 0..1000 {
        if metric(registry, "lazyfs_assembly_queue") == 0.0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("assembly did not finish within 10 s");
}

/// A file of four chunks, the second and the fourth the same.
fn file_of_four() -> (Vec<Vec<u8>>, Arc<MemoryBlob>) {
    let chunks = [chunk(0, 10_000), chunk(1, 10_000), chunk(2, 10_000)];
    let file = vec![
        chunks[0].clone(),
        chunks[1].clone(),
        chunks[2].clone(),
        chunks[1].clone(),
    ];
    let blob = Arc::new(MemoryBlob::new(&file));
    (file, blob)
}

#[tokio::test]
async fn fully_cached_files_are_assembled_into_one_verified_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, registry) = open(dir.path(), u64::MAX);
    let (file, blob) = file_of_four();
    let source: Arc<dyn ChunkSource> = blob.clone();
    let records = &blob.records;
    assert!(!cache.assemble_later(records), "nothing cached yet");
    cache.read(&source, &records[..1], 0, 10_000).await.unwrap();
    cache.settled().await;
    assert!(!cache.assemble_later(records), "partly cached");
    cache.read(&source, records, 0, 40_000).await.unwrap();
    cache.settled().await;
    assert!(
        !cache.assemble_later(&records[..1]),
        "one chunk is its own file"
    );
    assert!(cache.assemble_later(records));
    wait_for_assembly(&registry);
    let path = cache.assembled(records).expect("assembled");
    assert_eq!(std::fs::read(&path).unwrap(), file.concat());
    assert!(!cache.assemble_later(records), "assembled once");
    assert_eq!(metric(&registry, "lazyfs_assembled_files_total"), 1.0);
    assert_eq!(cache.usage(), (70_000, 3), "three chunks and the copy");
    assert_eq!(cache.copies(), (1, 40_000));
    assert_eq!(cache.verify(), (4, Vec::new()));

    // The copy and its record survive a restart; a copy changed on disk
    // is found by verify and no longer used.
    drop(cache);
    let (cache, _) = open(dir.path(), u64::MAX);
    assert_eq!(cache.assembled(records), Some(path.clone()));
    assert_eq!(cache.copies(), (1, 40_000), "known as a copy again");
    std::fs::write(&path, vec![0u8; 40_000]).unwrap();
    let (checked, bad) = cache.verify();
    assert_eq!((checked, bad.len()), (4, 1));
    assert_eq!(cache.assembled(records), None);
    assert_eq!(
        cache.read(&source, records, 0, 40_000).await.unwrap(),
        file.concat(),
        "the chunks still serve the file"
    );
}

#[tokio::test]
async fn assembled_files_obey_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let (file, blob) = file_of_four();
    let source: Arc<dyn ChunkSource> = blob.clone();
    let records = &blob.records;
    {
        // 40 KB is more than a quarter of a 100 KB quota: never copied.
        let (cache, _) = open(dir.path(), 100_000);
        cache.read(&source, records, 0, 40_000).await.unwrap();
        cache.settled().await;
        assert_eq!(cache.usage().1, 3, "all cached");
        assert!(!cache.assemble_later(records));
    }
    let (cache, registry) = open(dir.path(), 200_000);
    assert!(cache.assemble_later(records));
    wait_for_assembly(&registry);
    assert!(cache.assembled(records).is_some());
    // Evicted like any chunk, after which the chunks are fetched again.
    assert_eq!(cache.gc(0), (4, 70_000));
    assert_eq!(cache.assembled(records), None);
    assert_eq!(
        cache.read(&source, records, 0, 40_000).await.unwrap(),
        file.concat()
    );
}

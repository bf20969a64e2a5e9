//! The cache against an in-memory blob source (a real `ChunkSource` whose
//! requests can be counted, slowed and corrupted).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lazy_cache::{CacheConfig, CacheError, CacheMetrics, ChunkCache, ChunkSource, SourceError};
use lazy_format::{ChunkRecord, ChunkTable, encode_chunk};

/// A blob in memory, built from chunks.
struct MemoryBlob {
    bytes: Vec<u8>,
    records: Vec<ChunkRecord>,
    requests: Mutex<Vec<Range<u64>>>,
    delay: Duration,
    corrupt: AtomicBool,
    corrupt_at: Mutex<Option<usize>>,
}

impl MemoryBlob {
    fn new(chunks: &[Vec<u8>]) -> Self {
        let mut table = ChunkTable::new();
        let mut bytes = Vec::new();
        let mut records = Vec::new();
        for c in chunks {
            let enc = encode_chunk(c, 3);
            let (index, new) = table.insert(&enc);
            if new {
                bytes.extend_from_slice(&enc.bytes);
            }
            records.push(index);
        }
        let table = table.into_records();
        let records = records.into_iter().map(|i| table[i as usize]).collect();
        Self {
            bytes,
            records,
            requests: Mutex::new(Vec::new()),
            delay: Duration::ZERO,
            corrupt: AtomicBool::new(false),
            corrupt_at: Mutex::new(None),
        }
    }

    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl ChunkSource for MemoryBlob {
    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.requests.lock().unwrap().push(range.clone());
            let (start, end) = (
                usize::try_from(range.start).unwrap(),
                usize::try_from(range.end).unwrap(),
            );
            let mut out = self.bytes[start..end].to_vec();
            if self.corrupt.load(Ordering::SeqCst) {
                out[0] ^= 0xff;
            }
            if let Some(at) = *self.corrupt_at.lock().unwrap()
                && (start..end).contains(&at)
            {
                out[at - start] ^= 0xff;
            }
            Ok(out)
        })
    }

    fn blob_name(&self) -> &str {
        "sha256:memory"
    }
}

fn chunk(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            n.wrapping_mul(31)
                .wrapping_add(u8::try_from(i % 251).unwrap())
        })
        .collect()
}

fn open(dir: &std::path::Path, quota: u64) -> (ChunkCache, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let mut config = CacheConfig::new(dir);
    config.quota_bytes = quota;
    config.hot_set_bytes = 0;
    config.fetch_timeout = Duration::from_millis(500);
    (
        ChunkCache::open(config, CacheMetrics::register(&registry).unwrap()).unwrap(),
        registry,
    )
}

fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .parse()
        .unwrap()
}

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

//! Shared by the cache's integration tests: an in-memory blob source (a
//! real `ChunkSource` whose requests can be counted, slowed and corrupted),
//! chunk data, a cache opened on a directory, its metrics.
#![allow(dead_code)] // each test binary uses its own subset

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lazy_cache::{CacheConfig, CacheMetrics, ChunkCache, ChunkSource, SourceError};
use lazy_format::{ChunkRecord, ChunkTable, encode_chunk};

/// A blob in memory, built from chunks.
pub struct MemoryBlob {
    pub bytes: Vec<u8>,
    pub records: Vec<ChunkRecord>,
    pub requests: Mutex<Vec<Range<u64>>>,
    pub delay: Duration,
    pub corrupt: AtomicBool,
    pub corrupt_at: Mutex<Option<usize>>,
}

impl MemoryBlob {
    pub fn new(chunks: &[Vec<u8>]) -> Self {
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

    pub fn request_count(&self) -> usize {
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

pub fn chunk(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            n.wrapping_mul(31)
                .wrapping_add(u8::try_from(i % 251).unwrap())
        })
        .collect()
}

pub fn open(dir: &std::path::Path, quota: u64) -> (ChunkCache, prometheus::Registry) {
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

pub fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .parse()
        .unwrap()
}

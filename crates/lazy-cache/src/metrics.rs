//! Cache metrics, registered on a registry the daemon passes in.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Counters and gauges of one cache.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Stored (compressed) bytes fetched from sources.
    pub bytes_fetched: IntCounter,
    /// Chunks fetched from sources.
    pub chunks_fetched: IntCounter,
    /// Range requests sent to sources.
    pub requests: IntCounter,
    /// Chunk reads served from the cache.
    pub hits: IntCounter,
    /// Chunk reads that needed a fetch (or waited for one).
    pub misses: IntCounter,
    /// Seconds per range request.
    pub fetch_seconds: Histogram,
    /// Bytes held: chunk files and whole-file copies.
    pub cache_bytes: IntGauge,
    /// Chunks held.
    pub cache_chunks: IntGauge,
    /// Chunks evicted to stay within the quota.
    pub evictions: IntCounter,
    /// Fetched chunks that failed digest verification.
    pub verification_failures: IntCounter,
    /// Multi-chunk files copied whole into the cache (for passthrough).
    pub assembled_files: IntCounter,
    /// Files waiting for or in assembly.
    pub assembly_queue: IntGauge,
}

impl CacheMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(format!("lazyfs_{name}"), help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(format!("lazyfs_{name}"), help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let fetch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "lazyfs_fetch_seconds",
                "Latency of range requests to chunk sources",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(fetch_seconds.clone()))?;
        Ok(Self {
            bytes_fetched: counter(
                "fetched_bytes_total",
                "Stored chunk bytes fetched from sources",
            )?,
            chunks_fetched: counter("fetched_chunks_total", "Chunks fetched from sources")?,
            requests: counter("fetch_requests_total", "Range requests sent to sources")?,
            hits: counter("cache_hits_total", "Chunk reads served from the cache")?,
            misses: counter("cache_misses_total", "Chunk reads that needed a fetch")?,
            fetch_seconds,
            cache_bytes: gauge(
                "cache_bytes",
                "Bytes of chunks and whole-file copies in the cache",
            )?,
            cache_chunks: gauge("cache_chunks", "Chunks in the cache")?,
            evictions: counter(
                "cache_evictions_total",
                "Chunks evicted to stay within the quota",
            )?,
            verification_failures: counter(
                "verification_failures_total",
                "Fetched chunks that failed digest verification",
            )?,
            assembled_files: counter(
                "assembled_files_total",
                "Multi-chunk files copied whole into the cache for passthrough",
            )?,
            assembly_queue: gauge("assembly_queue", "Files waiting for or in assembly")?,
        })
    }
}

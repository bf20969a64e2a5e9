//! The lazyfs host-shared chunk cache.
//!
//! Chunks are files named by the sha256 of their uncompressed bytes, indexed
//! in rocksdb, with an in-memory LRU hot set of small chunks. Reads go
//! through a [`ChunkSource`] per layer blob: concurrent misses on one chunk
//! make one fetch (single-flight), adjacent misses of one blob become one
//! range read (bounded), and every chunk is verified against its digest
//! before it is cached or returned. A hard quota evicts least-recently-used
//! chunks, never one being read or pinned. Writes go temp file → rename →
//! index, and start-up reconciles files and index, so a crash at any moment
//! leaves no corrupt chunk to be served. Fully cached multi-chunk files
//! can be assembled into one stored file for FUSE passthrough.

mod ahead;
mod around;
mod assemble;
mod cache;
mod config;
mod error;
mod fetch;
mod flight;
mod hot;
mod index;
mod ledger;
mod link;
mod meta_store;
mod metrics;
mod plan;
mod read;
mod reconcile;
mod source;
mod store;

pub use ahead::{Agreement, HEAD_START};
pub use cache::ChunkCache;
pub use config::CacheConfig;
pub use error::CacheError;
pub use link::ReadAround;
pub use meta_store::MetaStore;
pub use metrics::CacheMetrics;
pub use read::ReadGuard;
pub use source::{ChunkSource, SourceError};

//! Whole-file copies of cached multi-chunk files, for FUSE passthrough:
//! the kernel can pass a file's reads to one backing file only, and a
//! file of many chunks otherwise costs a daemon round trip per 128 KiB.
//!
//! Once every chunk of a file is cached, one background thread copies
//! them, verified, into a single file stored like a chunk under the sha256
//! of its content, so that quota, eviction, reconciliation and `verify`
//! treat it as one more chunk. The index maps the file's chunk list to it.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};

use lazy_format::{ChunkDigest, ChunkRecord};
use sha2::{Digest, Sha256};

use crate::cache::Inner;
use crate::index::IndexEntry;
use crate::ledger::now_ms;
use crate::read::ReadGuard;
use crate::{CacheError, ChunkCache};

/// Files larger than this share of the quota are not assembled: the copy
/// would evict much of the cache it is made from.
const MAX_QUOTA_SHARE: u64 = 4;

/// The queue of files waiting to be assembled, each once.
#[derive(Debug, Default)]
pub(crate) struct AssemblyQueue {
    sender: Mutex<Option<Sender<Vec<ChunkRecord>>>>,
    /// Chunk-list keys queued or being assembled.
    pending: Mutex<HashSet<ChunkDigest>>,
}

/// Names a file by its chunk list: what the index maps to its copy.
fn list_key(chunks: &[ChunkRecord]) -> ChunkDigest {
    let mut hasher = Sha256::new();
    for c in chunks {
        hasher.update(c.digest.0);
    }
    ChunkDigest(hasher.finalize().into())
}

impl ChunkCache {
    /// The path of the whole-file copy of the file made of `chunks`, if
    /// one is cached (and marks it used).
    pub fn assembled(&self, chunks: &[ChunkRecord]) -> Option<PathBuf> {
        if chunks.len() < 2 {
            return None;
        }
        let inner = &self.inner;
        let content = inner.index.assembled(&list_key(chunks)).ok()??;
        let present = inner.ledger.lock().expect("ledger lock").touch(content);
        present.then(|| inner.store.path(&content))
    }

    /// Queues the file made of `chunks` for assembly if it has several
    /// chunks, all cached, and no copy yet. Returns whether it was queued.
    pub fn assemble_later(&self, chunks: &[ChunkRecord]) -> bool {
        let inner = &self.inner;
        let size: u64 = chunks.iter().map(|c| u64::from(c.size)).sum();
        if chunks.len() < 2 || size > inner.config.quota_bytes / MAX_QUOTA_SHARE {
            return false;
        }
        {
            let ledger = inner.ledger.lock().expect("ledger lock");
            if !chunks.iter().all(|c| ledger.contains(&c.digest)) {
                return false;
            }
        }
        let key = list_key(chunks);
        if self.assembled(chunks).is_some()
            || !inner
                .assembly
                .pending
                .lock()
                .expect("pending lock")
                .insert(key)
        {
            return false;
        }
        inner.metrics.assembly_queue.inc();
        let mut sender = inner.assembly.sender.lock().expect("sender lock");
        let tx = sender.get_or_insert_with(|| start_worker(Arc::downgrade(inner)));
        if tx.send(chunks.to_vec()).is_err() {
            unqueue(inner, &key);
            return false;
        }
        true
    }
}

/// Ends a file's turn in the queue (assembled, given up or never sent).
fn unqueue(inner: &Inner, key: &ChunkDigest) {
    inner
        .assembly
        .pending
        .lock()
        .expect("pending lock")
        .remove(key);
    inner.metrics.assembly_queue.dec();
}

/// One thread assembles queued files one after the other (a background
/// copy must not compete with readers for the disk more than that). It
/// ends with the cache: the sender lives in the cache.
fn start_worker(cache: Weak<Inner>) -> Sender<Vec<ChunkRecord>> {
    let (tx, rx) = channel();
    let spawned = std::thread::Builder::new()
        .name("lazyfs-assemble".into())
        .spawn(move || work(&cache, &rx));
    if let Err(e) = spawned {
        tracing::warn!("no assembly thread: {e}");
    }
    tx
}

fn work(cache: &Weak<Inner>, rx: &Receiver<Vec<ChunkRecord>>) {
    while let Ok(chunks) = rx.recv() {
        let Some(inner) = cache.upgrade() else {
            return;
        };
        match assemble(&inner, &chunks) {
            Ok(Some(content)) => tracing::debug!("assembled {} chunks as {content}", chunks.len()),
            Ok(None) => tracing::debug!("not assembled: a chunk left the cache"),
            Err(e) => tracing::warn!("assembling a file of {} chunks: {e}", chunks.len()),
        }
        unqueue(&inner, &list_key(&chunks));
    }
}

/// Copies `chunks` into one stored file; `None` if one is no longer cached.
fn assemble(inner: &Arc<Inner>, chunks: &[ChunkRecord]) -> Result<Option<ChunkDigest>, CacheError> {
    // Read references keep the chunks from eviction while they are copied.
    let mut guard = ReadGuard::new(inner);
    {
        let mut ledger = inner.ledger.lock().expect("ledger lock");
        for c in chunks {
            if guard.held.contains(&c.digest) {
                continue;
            }
            if !ledger.acquire(c.digest) {
                return Ok(None);
            }
            guard.held.push(c.digest);
        }
    }
    let (partial, mut file) = inner.store.create_partial()?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let copied = chunks.iter().try_for_each(|c| {
        let data = inner.store.read(&c.digest)?;
        // Chunks were verified when stored; the disk may have changed them.
        if ChunkDigest::of(&data) != c.digest {
            return Err(CacheError::store(
                inner.store.path(&c.digest),
                "chunk file no longer matches its digest (run `lazyctl cache verify`)",
            ));
        }
        hasher.update(&data);
        size += data.len() as u64;
        file.write_all(&data)
            .map_err(|e| CacheError::store(&partial, e))
    });
    drop(file);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let content = ChunkDigest(hasher.finalize().into());
    inner.store.install(&partial, &content)?;
    let entry = IndexEntry {
        size,
        last_access_ms: now_ms(),
    };
    let indexed = inner
        .index
        .put(&content, entry)
        .and_then(|()| inner.index.put_assembled(&list_key(chunks), &content));
    if let Err(e) = indexed {
        let _ = inner.store.remove(&content);
        return Err(e);
    }
    {
        let mut ledger = inner.ledger.lock().expect("ledger lock");
        ledger.insert(content, size, false);
        ledger.mark_copy(content);
    }
    inner.metrics.assembled_files.inc();
    inner.update_gauges();
    Ok(Some(content))
}

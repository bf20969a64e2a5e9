//! In-memory accounting of the cached chunks: sizes, recency, readers and
//! pins. Decides what to evict; never a chunk being read or a pinned one.

use std::collections::{BTreeSet, HashMap, HashSet};

use lazy_format::ChunkDigest;

#[derive(Debug, Clone, Copy)]
struct Held {
    size: u64,
    tick: u64,
    /// Wall-clock time of the last use, ms since the epoch (persisted in
    /// batches, so that LRU order survives a restart).
    used_ms: u64,
    readers: u32,
    /// A whole-file copy of other chunks (see `assemble`), not a chunk.
    copy: bool,
}

/// The chunks present in the store, in least-recently-used order.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    chunks: HashMap<ChunkDigest, Held>,
    order: BTreeSet<(u64, ChunkDigest)>,
    pins: HashMap<ChunkDigest, u32>,
    tick: u64,
    total: u64,
    copies: usize,
    copy_bytes: u64,
    /// Used since their last use was persisted.
    dirty: HashSet<ChunkDigest>,
    /// Read references on chunks a reader holds in memory while they are
    /// being stored: they become the chunk's readers when it is inserted.
    pending_readers: HashMap<ChunkDigest, u32>,
}

impl Ledger {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Adds a present chunk used now; `reader` takes a read reference for
    /// the caller. Returns false if it was there already.
    pub(crate) fn insert(&mut self, digest: ChunkDigest, size: u64, reader: bool) -> bool {
        self.insert_used(digest, size, reader, now_ms())
    }

    /// Adds a present chunk last used at `used_ms` (oldest first when
    /// loading). Returns false if it was there already.
    pub(crate) fn insert_used(
        &mut self,
        digest: ChunkDigest,
        size: u64,
        reader: bool,
        used_ms: u64,
    ) -> bool {
        if self.acquire_if(digest, reader) {
            return false;
        }
        let tick = self.next_tick();
        self.chunks.insert(
            digest,
            Held {
                size,
                tick,
                used_ms,
                readers: u32::from(reader) + self.pending_readers.remove(&digest).unwrap_or(0),
                copy: false,
            },
        );
        self.order.insert((tick, digest));
        self.total += size;
        true
    }

    /// If present: marks it used now and takes a read reference.
    pub(crate) fn acquire(&mut self, digest: ChunkDigest) -> bool {
        self.acquire_if(digest, true)
    }

    /// If present: marks it used now (no read reference).
    pub(crate) fn touch(&mut self, digest: ChunkDigest) -> bool {
        self.acquire_if(digest, false)
    }

    fn acquire_if(&mut self, digest: ChunkDigest, reader: bool) -> bool {
        let tick = self.next_tick();
        let Some(held) = self.chunks.get_mut(&digest) else {
            return false;
        };
        self.order.remove(&(held.tick, digest));
        held.tick = tick;
        held.used_ms = now_ms();
        held.readers += u32::from(reader);
        self.order.insert((tick, digest));
        self.dirty.insert(digest);
        true
    }

    /// The chunks used since the last call, with size and time of last
    /// use, for the index.
    pub(crate) fn take_used(&mut self) -> Vec<(ChunkDigest, u64, u64)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|d| self.chunks.get(&d).map(|h| (d, h.size, h.used_ms)))
            .collect()
    }

    /// Marks a present entry as a whole-file copy rather than a chunk
    /// (counted apart in the stats).
    pub(crate) fn mark_copy(&mut self, digest: ChunkDigest) {
        if let Some(held) = self.chunks.get_mut(&digest)
            && !held.copy
        {
            held.copy = true;
            self.copies += 1;
            self.copy_bytes += held.size;
        }
    }

    /// Takes a read reference on a chunk a reader has in memory: on the
    /// chunk if it is present, else on its coming insertion.
    pub(crate) fn expect_reader(&mut self, digest: ChunkDigest) {
        match self.chunks.get_mut(&digest) {
            Some(held) => held.readers += 1,
            None => *self.pending_readers.entry(digest).or_default() += 1,
        }
    }

    /// Drops a read reference (taken by `acquire`, `insert` or `expect_reader`).
    pub(crate) fn release(&mut self, digest: ChunkDigest) {
        if let Some(held) = self.chunks.get_mut(&digest) {
            held.readers = held.readers.saturating_sub(1);
        } else if let Some(n) = self.pending_readers.get_mut(&digest) {
            *n -= 1;
            if *n == 0 {
                self.pending_readers.remove(&digest);
            }
        }
    }

    /// Protects chunks from eviction (counted: pin twice, unpin twice).
    pub(crate) fn pin(&mut self, digests: impl IntoIterator<Item = ChunkDigest>) {
        for d in digests {
            *self.pins.entry(d).or_default() += 1;
        }
    }

    /// Undoes one [`Ledger::pin`].
    pub(crate) fn unpin(&mut self, digests: impl IntoIterator<Item = ChunkDigest>) {
        for d in digests {
            if let Some(n) = self.pins.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    self.pins.remove(&d);
                }
            }
        }
    }

    /// Removes least-recently-used chunks that are neither read nor pinned
    /// until at most `quota` bytes remain; returns them for deletion.
    pub(crate) fn evict_to(&mut self, quota: u64) -> Vec<(ChunkDigest, u64)> {
        if self.total <= quota {
            return Vec::new();
        }
        // Walk from the least recent, only as far as needed.
        let mut excess = self.total - quota;
        let mut doomed = Vec::new();
        for (tick, digest) in &self.order {
            if excess == 0 {
                break;
            }
            let held = &self.chunks[digest];
            if held.readers == 0 && !self.pins.contains_key(digest) {
                excess = excess.saturating_sub(held.size);
                doomed.push((*tick, *digest));
            }
        }
        doomed
            .into_iter()
            .map(|(_, digest)| {
                let size = self.forget(digest);
                (digest, size)
            })
            .collect()
    }

    /// Forgets a chunk whatever its state (evicted, or found corrupt or
    /// missing); returns its size.
    pub(crate) fn forget(&mut self, digest: ChunkDigest) -> u64 {
        let Some(held) = self.chunks.remove(&digest) else {
            return 0;
        };
        self.dirty.remove(&digest);
        self.order.remove(&(held.tick, digest));
        self.total -= held.size;
        if held.copy {
            self.copies -= 1;
            self.copy_bytes -= held.size;
        }
        held.size
    }

    /// Whether a chunk is present.
    pub(crate) fn contains(&self, digest: &ChunkDigest) -> bool {
        self.chunks.contains_key(digest)
    }

    /// Bytes held.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Chunks held, whole-file copies not counted.
    pub(crate) fn count(&self) -> usize {
        self.chunks.len() - self.copies
    }

    /// Whole-file copies held, and their bytes.
    pub(crate) fn copies(&self) -> (usize, u64) {
        (self.copies, self.copy_bytes)
    }

    /// All present digests (for verification).
    pub(crate) fn digests(&self) -> Vec<ChunkDigest> {
        self.chunks.keys().copied().collect()
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> ChunkDigest {
        ChunkDigest([n; 32])
    }

    #[test]
    fn evicts_least_recent_but_never_read_or_pinned() {
        let mut l = Ledger::default();
        for n in 1..=4 {
            l.insert(d(n), 10, false);
        }
        assert!(l.acquire(d(1))); // 1 is now most recent and being read
        l.pin([d(2)]);
        let victims = l.evict_to(20);
        assert_eq!(victims, vec![(d(3), 10), (d(4), 10)]);
        assert_eq!(l.total(), 20);
        // Nothing evictable left: over quota is tolerated, not violated by eviction of readers.
        assert!(l.evict_to(0).is_empty());
        l.release(d(1));
        assert_eq!(l.evict_to(10), vec![(d(1), 10)]);
        l.unpin([d(2)]);
        assert_eq!(l.evict_to(0), vec![(d(2), 10)]);
        assert_eq!(l.count(), 0);
    }

    #[test]
    fn copies_are_counted_apart_until_they_go() {
        let mut l = Ledger::default();
        l.insert(d(1), 10, false);
        l.insert(d(2), 30, false);
        l.mark_copy(d(2));
        l.mark_copy(d(2));
        assert_eq!((l.total(), l.count(), l.copies()), (40, 1, (1, 30)));
        assert_eq!(l.evict_to(0).len(), 2);
        assert_eq!((l.total(), l.count(), l.copies()), (0, 0, (0, 0)));
    }
}

//! Start-up reconciliation of chunk files and index: after a crash at any
//! moment, only complete, verified chunks remain known.

use std::collections::HashMap;

use lazy_format::ChunkDigest;

use crate::CacheError;
use crate::index::{ChunkIndex, IndexEntry};
use crate::ledger::Ledger;
use crate::store::ChunkStore;

/// Loads the ledger from the index, dropping entries whose file is missing
/// or has the wrong size, and indexing files whose index write was lost
/// (after re-hashing them; files that fail are deleted), and forgetting
/// assembled files that are no longer there.
pub(crate) fn reconcile(store: &ChunkStore, index: &ChunkIndex) -> Result<Ledger, CacheError> {
    let files: HashMap<ChunkDigest, u64> = store.scan()?.into_iter().collect();
    let mut known: Vec<(ChunkDigest, IndexEntry)> = Vec::new();
    let mut stale = Vec::new();
    for (key, parsed) in index.entries()? {
        match parsed {
            Some((digest, entry)) if files.get(&digest) == Some(&entry.size) => {
                known.push((digest, entry))
            }
            Some((digest, _)) => {
                stale.push(digest);
                store.remove(&digest)?;
            }
            None => index.delete_raw(&key)?,
        }
    }
    index.delete_all(&stale)?;
    let indexed: std::collections::HashSet<ChunkDigest> = known.iter().map(|(d, _)| *d).collect();
    let now = crate::ledger::now_ms();
    for (digest, size) in files.iter().filter(|(d, _)| !indexed.contains(*d)) {
        let verified = store.hash(digest).is_ok_and(|h| h == *digest);
        if verified {
            let entry = IndexEntry {
                size: *size,
                last_access_ms: now,
            };
            index.put(digest, entry)?;
            known.push((*digest, entry));
        } else {
            tracing::warn!("removing unverifiable cache file for {digest}");
            store.remove(digest)?;
        }
    }
    // Least recently used first: eviction order survives the restart.
    known.sort_by_key(|(d, e)| (e.last_access_ms, *d));
    let mut ledger = Ledger::default();
    for (digest, entry) in known {
        ledger.insert_used(digest, entry.size, false, entry.last_access_ms);
    }
    // Records of assembled files that are gone (evicted, or lost in a crash).
    for copy in index.prune_assembled(|content| ledger.contains(content))? {
        ledger.mark_copy(copy);
    }
    if !stale.is_empty() {
        tracing::info!(
            "reconciled cache: dropped {} stale index entries",
            stale.len()
        );
    }
    Ok(ledger)
}

//! FUSE passthrough for cached files: the kernel reads the chunk file of a
//! one-chunk file, or the whole-file copy the cache assembles of a bigger
//! one, directly, without a round trip through the daemon. One
//! backing id per inode is shared by its open handles and closed with the last.
//!
//! The kernel keeps one I/O mode per inode: while any handle of an inode is
//! open through the page cache, a passthrough open of it fails with EIO, and
//! the other way round. So the table remembers how each inode is open and
//! keeps new handles in that mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fuser::BackingId;

/// Open handles by inode, in one I/O mode per inode.
#[derive(Debug)]
pub struct BackingTable {
    inner: Mutex<Table>,
}

impl Default for BackingTable {
    /// Handles start at a number of this process's own (its PID in the
    /// high bits): after a takeover the kernel still holds handles of the
    /// daemon before, and releasing one must not release one of ours.
    fn default() -> Self {
        let table = Table {
            next_fh: u64::from(std::process::id()) << 32,
            ..Table::default()
        };
        Self {
            inner: Mutex::new(table),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    /// Handle → inode, for every open handle.
    handles: HashMap<u64, u64>,
    inodes: HashMap<u64, InodeOpens>,
    next_fh: u64,
}

#[derive(Debug)]
struct InodeOpens {
    handles: usize,
    /// The backing file while the inode is open in passthrough mode.
    backing: Option<Arc<BackingId>>,
}

/// How a handle was opened.
pub enum Opened {
    /// Reads go to the backing file.
    Passthrough(u64, Arc<BackingId>),
    /// Reads come to the daemon.
    Cached(u64),
}

impl BackingTable {
    /// A new handle for `ino`: passthrough if the inode is open that way
    /// already, or is not open at all and `create` gives a backing file;
    /// otherwise a cached handle.
    pub fn open(
        &self,
        ino: u64,
        create: impl FnOnce() -> Option<std::io::Result<BackingId>>,
    ) -> Opened {
        let mut table = self.inner.lock().expect("backing table lock");
        table.next_fh += 1;
        let fh = table.next_fh;
        table.handles.insert(fh, ino);
        let opens = table.inodes.entry(ino).or_insert(InodeOpens {
            handles: 0,
            backing: None,
        });
        opens.handles += 1;
        if let Some(id) = &opens.backing {
            return Opened::Passthrough(fh, Arc::clone(id));
        }
        if opens.handles > 1 {
            return Opened::Cached(fh);
        }
        match create() {
            Some(Ok(id)) => {
                let id = Arc::new(id);
                opens.backing = Some(Arc::clone(&id));
                Opened::Passthrough(fh, id)
            }
            Some(Err(e)) => {
                tracing::debug!("no passthrough for inode {ino}: {e}");
                Opened::Cached(fh)
            }
            None => Opened::Cached(fh),
        }
    }

    /// Releases a handle; the inode's mode (and backing id) ends with its
    /// last handle.
    pub fn release(&self, fh: u64) {
        let mut table = self.inner.lock().expect("backing table lock");
        let Some(ino) = table.handles.remove(&fh) else {
            return;
        };
        if let Some(opens) = table.inodes.get_mut(&ino) {
            opens.handles -= 1;
            if opens.handles == 0 {
                table.inodes.remove(&ino);
            }
        }
    }

    #[cfg(test)]
    /// Open handles (for stats and tests).
    pub fn open_handles(&self) -> usize {
        self.inner.lock().expect("backing table lock").handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_cached(o: &Opened) -> bool {
        matches!(o, Opened::Cached(_))
    }

    #[test]
    fn an_inode_open_cached_stays_cached_until_its_last_release() {
        let table = BackingTable::default();
        let first = table.open(7, || None);
        assert!(is_cached(&first));
        // The chunk got cached meanwhile, but the inode is open cached.
        let second = table.open(7, || panic!("must not create a backing file"));
        assert!(is_cached(&second));
        for o in [first, second] {
            let (Opened::Cached(fh) | Opened::Passthrough(fh, _)) = o;
            table.release(fh);
        }
        assert_eq!(table.open_handles(), 0);
        let err = table.open(7, || Some(Err(std::io::Error::other("no backing"))));
        assert!(
            is_cached(&err),
            "a failed backing open falls back to cached"
        );
    }
}

//! FUSE passthrough for cached single-chunk files: the kernel reads the
//! chunk file directly, without a round trip through the daemon. One
//! backing id per inode is shared by its open handles and closed with the last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use fuser::BackingId;

/// Backing ids by open file handle (strong) and by inode (weak).
#[derive(Debug, Default)]
pub struct BackingTable {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_handle: HashMap<u64, Arc<BackingId>>,
    by_inode: HashMap<u64, Weak<BackingId>>,
    next_fh: u64,
}

impl BackingTable {
    /// A new handle for `ino`, reusing its backing id or creating one.
    pub fn open(
        &self,
        ino: u64,
        create: impl FnOnce() -> std::io::Result<BackingId>,
    ) -> std::io::Result<(u64, Arc<BackingId>)> {
        let mut table = self.inner.lock().expect("backing table lock");
        table.next_fh += 1;
        let fh = table.next_fh;
        let id = match table.by_inode.get(&ino).and_then(Weak::upgrade) {
            Some(id) => id,
            None => {
                let id = Arc::new(create()?);
                table.by_inode.insert(ino, Arc::downgrade(&id));
                id
            }
        };
        table.by_handle.insert(fh, Arc::clone(&id));
        Ok((fh, id))
    }

    /// Releases a handle; the backing id closes with its last handle.
    pub fn release(&self, fh: u64) {
        let mut table = self.inner.lock().expect("backing table lock");
        table.by_handle.remove(&fh);
        table.by_inode.retain(|_, id| id.strong_count() > 0);
    }

    /// Open handles (for stats and tests).
    pub fn open_handles(&self) -> usize {
        self.inner
            .lock()
            .expect("backing table lock")
            .by_handle
            .len()
    }
}

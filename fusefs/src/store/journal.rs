//! The layer store's tree as saved for a daemon that takes the store's
//! mount over: the kernel keeps the store's inode numbers across the
//! handover, so the new daemon must give each the same meaning. Only the
//! nodes lookups add are saved, in inode order; the rest follows from them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A node a lookup added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Saved {
    /// An image directory in the root, by its (base64) name.
    Image {
        /// The directory's name.
        name: String,
    },
    /// A layer directory (and its three files) in image directory `parent`.
    Layer {
        /// The image directory's inode.
        parent: u64,
        /// The layer's digest, the directory's name.
        digest: String,
    },
}

/// Where the tree is saved, and what it holds so far.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    saved: Vec<Saved>,
}

impl Journal {
    /// An empty journal at `path` (a new mount: what an earlier one saved
    /// means nothing to it).
    pub fn new(path: &Path) -> Self {
        let journal = Self {
            path: path.to_owned(),
            saved: Vec::new(),
        };
        journal.write();
        journal
    }

    /// What the journal at `path` holds, in order.
    pub fn load(path: &Path) -> anyhow::Result<Vec<Saved>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Adds `node` and saves. Called before the kernel learns its inode.
    pub fn add(&mut self, node: Saved) {
        self.saved.push(node);
        self.write();
    }

    fn write(&self) {
        let bytes = serde_json::to_vec(&self.saved).expect("saved nodes serialize");
        // A killed daemon is what this is for, not a power cut (which ends
        // the mount too).
        let durability = lazy_statefile::Durability::ProcessCrash;
        if let Err(e) = lazy_statefile::write_atomic(&self.path, &bytes, durability) {
            tracing::warn!(
                "saving the layer store's tree to {}: {e}; a daemon taking the mount over \
                 will not know the newest names",
                self.path.display()
            );
        }
    }
}

//! The metadata tree of one layer: entries and the chunk table.

use serde::{Deserialize, Serialize};

use crate::{ChunkDigest, EntryPath};

/// Everything a reader needs to know about one layer, without its file data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LayerMeta {
    /// Every entry, sorted by path bytes, unique; the root (`""`) first.
    pub entries: Vec<Entry>,
    /// Every distinct chunk stored in the blob; files refer to it by index.
    pub chunks: Vec<ChunkRecord>,
}

/// One filesystem entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Where it lives, relative to the layer root.
    pub path: EntryPath,
    /// What it is, with the fields only that kind has.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime_secs: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nanos: u32,
    /// Extended attributes in the order the layer gave them.
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute; names and values are raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, e.g. `security.capability`.
    pub name: Vec<u8>,
    /// Attribute value.
    pub value: Vec<u8>,
}

/// Kinds of entry, each with its own data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory. `opaque` hides everything below it in lower layers
    /// (the overlayfs `trusted.overlay.opaque=y` directory).
    Dir {
        /// Whether lower layers' contents of this directory are hidden.
        opaque: bool,
    },
    /// A regular file made of chunks, in order.
    File {
        /// Size in bytes: the sum of its chunks' uncompressed sizes.
        size: u64,
        /// Indexes into [`LayerMeta::chunks`].
        chunks: Vec<u32>,
    },
    /// A symbolic link.
    Symlink {
        /// Link target, raw bytes, as stored.
        target: Vec<u8>,
    },
    /// A second name for another entry of the same layer.
    Hardlink {
        /// Path of the entry it shares an inode with.
        target: EntryPath,
    },
    /// A character or block device.
    Device {
        /// Character or block.
        kind: DeviceKind,
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// Deletes `path` from lower layers (an OCI `.wh.` file; shown to
    /// overlayfs as a 0:0 character device).
    Whiteout,
}

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceKind {
    /// Character device.
    Char,
    /// Block device.
    Block,
}

/// Where one distinct chunk lives in the blob and how it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// sha256 of the uncompressed bytes.
    pub digest: ChunkDigest,
    /// Offset of the stored bytes in the blob.
    pub offset: u64,
    /// Length of the stored bytes in the blob.
    pub stored_len: u32,
    /// Length once decompressed.
    pub size: u32,
    /// How the stored bytes are encoded.
    pub compression: Compression,
}

impl ChunkRecord {
    /// One past the last stored byte; saturates (validation rejects overflow).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.stored_len))
    }
}

/// Encoding of a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Stored as is (compression did not pay).
    None,
    /// One zstd frame.
    Zstd,
}

/// Counts that describe a layer, for `lazyctl inspect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerStats {
    /// Entries of every kind.
    pub entries: u64,
    /// Regular files (hardlinks not counted).
    pub files: u64,
    /// Chunk references from files, duplicates included.
    pub chunk_refs: u64,
    /// Distinct chunks stored.
    pub unique_chunks: u64,
    /// Bytes of file content as the files see it.
    pub file_bytes: u64,
    /// Bytes of distinct chunks, uncompressed (`file_bytes / chunk_bytes`
    /// is the dedup ratio).
    pub chunk_bytes: u64,
    /// Bytes of chunk data in the blob.
    pub data_bytes: u64,
}

impl LayerMeta {
    /// Counts entries, files and chunks.
    pub fn stats(&self) -> LayerStats {
        let mut stats = LayerStats {
            entries: self.entries.len() as u64,
            unique_chunks: self.chunks.len() as u64,
            chunk_bytes: self.chunks.iter().map(|c| u64::from(c.size)).sum(),
            data_bytes: self.chunks.iter().map(|c| u64::from(c.stored_len)).sum(),
            ..LayerStats::default()
        };
        for entry in &self.entries {
            if let EntryKind::File { size, chunks } = &entry.kind {
                stats.files += 1;
                stats.chunk_refs += chunks.len() as u64;
                stats.file_bytes = stats.file_bytes.saturating_add(*size);
            }
        }
        stats
    }

    /// Finds an entry by exact path (entries are sorted).
    pub fn find(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The chunk records of a file entry, in file order.
    pub fn file_chunks<'a>(
        &'a self,
        chunks: &'a [u32],
    ) -> impl Iterator<Item = &'a ChunkRecord> + 'a {
        chunks.iter().filter_map(|i| self.chunks.get(*i as usize))
    }
}

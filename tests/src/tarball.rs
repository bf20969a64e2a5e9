//! A small tar writer for test layers: every entry kind, PAX xattrs and
//! times, long and non-UTF-8 names.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use tar::{EntryType, Header};

/// Fixed mtime for test entries, so images are reproducible.
pub const MTIME: u64 = 1_700_000_000;

/// Builds one uncompressed tar layer in memory.
pub struct TarLayer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for TarLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TarLayer {
    /// An empty layer.
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, owner: (u64, u64)) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(MTIME);
        h.set_size(0);
        h
    }

    fn append(&mut self, mut h: Header, path: &[u8], data: &[u8]) -> &mut Self {
        h.set_size(data.len() as u64);
        self.builder
            .append_data(&mut h, OsStr::from_bytes(path), data)
            .expect("append to in-memory tar");
        self
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(
            Self::header(EntryType::Directory, mode, (0, 0)),
            path.as_bytes(),
            b"",
        )
    }

    /// A regular file owned by root.
    pub fn file(&mut self, path: &[u8], data: &[u8], mode: u32) -> &mut Self {
        self.file_owned(path, data, mode, (0, 0))
    }

    /// A regular file with an owner.
    pub fn file_owned(
        &mut self,
        path: &[u8],
        data: &[u8],
        mode: u32,
        owner: (u64, u64),
    ) -> &mut Self {
        self.append(Self::header(EntryType::Regular, mode, owner), path, data)
    }

    /// A symlink (long targets handled).
    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, 0o777, (0, 0));
        self.builder
            .append_link(&mut h, OsStr::from_bytes(path), OsStr::from_bytes(target))
            .expect("append symlink");
        self
    }

    /// A hardlink to an earlier entry.
    pub fn hardlink(&mut self, path: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Link, 0o644, (0, 0));
        self.builder
            .append_link(&mut h, OsStr::from_bytes(path), OsStr::from_bytes(target))
            .expect("append hardlink");
        self
    }

    /// A character (`block == false`) or block device.
    pub fn device(&mut self, path: &str, block: bool, major: u32, minor: u32) -> &mut Self {
        let kind = if block {
            EntryType::Block
        } else {
            EntryType::Char
        };
        let mut h = Self::header(kind, 0o660, (0, 6));
        h.set_device_major(major).expect("device major");
        h.set_device_minor(minor).expect("device minor");
        self.append(h, path.as_bytes(), b"")
    }

    /// A named pipe.
    pub fn fifo(&mut self, path: &str) -> &mut Self {
        self.append(
            Self::header(EntryType::Fifo, 0o644, (0, 0)),
            path.as_bytes(),
            b"",
        )
    }

    /// PAX records (xattrs as `SCHILY.xattr.*`, `mtime`) for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .expect("append pax");
        self
    }

    /// `.wh.NAME`: deletes `dir/NAME` from lower layers.
    pub fn whiteout(&mut self, dir: &str, name: &str) -> &mut Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(path.as_bytes(), b"", 0o644)
    }

    /// Marks `dir` opaque.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(format!("{dir}/.wh..wh..opq").as_bytes(), b"", 0o644)
    }

    /// The finished tar.
    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().expect("finish in-memory tar")
    }
}

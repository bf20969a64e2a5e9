//! Materializes lazy layers into a directory, applying them in order like
//! `umoci raw unpack`: whiteouts delete, opaque directories hide lower
//! content. The correctness oracle, and the fallback for hosts without FUSE.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use lazy_format::{ChunkRecord, DeviceKind, Entry, EntryKind, LayerMeta, decode_chunk};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;

use crate::error::{ConvertError, Result};

/// Reads a chunk's stored bytes from wherever the blob is.
pub trait ChunkReader {
    /// The stored (possibly compressed) bytes of `record`.
    fn read_stored(&self, record: &ChunkRecord) -> io::Result<Vec<u8>>;
}

impl ChunkReader for File {
    fn read_stored(&self, record: &ChunkRecord) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; record.stored_len as usize];
        self.read_exact_at(&mut buf, record.offset)?;
        Ok(buf)
    }
}

/// Applies one layer on top of what `root` holds already.
pub fn unpack_layer(
    root: &Path,
    meta: &LayerMeta,
    chunks: &impl ChunkReader,
    layer: &str,
) -> Result<()> {
    let mut hardlinks = Vec::new();
    for entry in &meta.entries {
        let path = target_path(root, &entry.path);
        check_parent(root, &path, entry, layer)?;
        match &entry.kind {
            EntryKind::Hardlink { .. } => hardlinks.push(entry),
            EntryKind::Whiteout => remove_any(&path)?,
            _ => create(root, &path, entry, meta, chunks)?,
        }
    }
    // Links last: their targets may sort after them.
    for entry in hardlinks {
        let EntryKind::Hardlink { target } = &entry.kind else {
            continue;
        };
        let path = target_path(root, &entry.path);
        remove_any(&path)?;
        fs::hard_link(target_path(root, target), &path).map_err(|e| err(&path, e))?;
    }
    // Directory times last, deepest first: creating children changes them.
    for entry in meta
        .entries
        .iter()
        .rev()
        .filter(|e| matches!(e.kind, EntryKind::Dir { .. }))
    {
        set_mtime(&target_path(root, &entry.path), entry)?;
    }
    Ok(())
}

fn create(
    root: &Path,
    path: &Path,
    entry: &Entry,
    meta: &LayerMeta,
    chunks: &impl ChunkReader,
) -> Result<()> {
    let existing = fs::symlink_metadata(path).ok();
    let is_dir = existing.as_ref().is_some_and(|m| m.is_dir());
    match &entry.kind {
        EntryKind::Dir { opaque } => {
            if existing.is_some() && !is_dir {
                remove_any(path)?;
            }
            if is_dir && *opaque {
                clear_dir(path)?;
            } else if !is_dir && path != root {
                fs::create_dir(path).map_err(|e| err(path, e))?;
            }
        }
        kind => {
            if existing.is_some() {
                remove_any(path)?;
            }
            make_node(path, kind, entry, meta, chunks)?;
        }
    }
    set_attrs(path, entry)
}

fn make_node(
    path: &Path,
    kind: &EntryKind,
    entry: &Entry,
    meta: &LayerMeta,
    chunks: &impl ChunkReader,
) -> Result<()> {
    let mode = Mode::from_bits_truncate(entry.mode);
    let node = |flag: SFlag, dev| mknod(path, flag, mode, dev).map_err(|e| err(path, e.into()));
    match kind {
        EntryKind::File { chunks: list, .. } => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(path, e))?;
            let mut last: Option<(&ChunkRecord, Vec<u8>)> = None;
            let mut size: u64 = 0;
            for record in meta.file_chunks(list) {
                // Repeated chunks (zeros of a sparse file) are decoded once.
                if last.as_ref().is_none_or(|(r, _)| *r != record) {
                    let stored = chunks.read_stored(record).map_err(|e| err(path, e))?;
                    let data = decode_chunk(record, &stored)
                        .map_err(|e| err(path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
                    last = Some((record, data));
                }
                let data = &last.as_ref().expect("decoded above").1;
                // Holes for zero chunks keep sparse files sparse.
                if data.iter().all(|b| *b == 0) {
                    file.seek(io::SeekFrom::Current(i64::from(record.size)))
                        .map_err(|e| err(path, e))?;
                } else {
                    file.write_all(data).map_err(|e| err(path, e))?;
                }
                size += u64::from(record.size);
            }
            file.set_len(size).map_err(|e| err(path, e))
        }
        EntryKind::Symlink { target } => {
            symlink(OsStr::from_bytes(target), path).map_err(|e| err(path, e))
        }
        EntryKind::Device { kind, major, minor } => {
            let flag = if *kind == DeviceKind::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            node(flag, makedev(u64::from(*major), u64::from(*minor)))
        }
        EntryKind::Fifo => node(SFlag::S_IFIFO, 0),
        EntryKind::Socket => node(SFlag::S_IFSOCK, 0),
        EntryKind::Dir { .. } | EntryKind::Hardlink { .. } | EntryKind::Whiteout => Ok(()),
    }
}

fn set_attrs(path: &Path, entry: &Entry) -> Result<()> {
    let is_symlink = matches!(entry.kind, EntryKind::Symlink { .. });
    lchown(path, Some(entry.uid), Some(entry.gid)).map_err(|e| err(path, e))?;
    if !is_symlink {
        // After chown, which clears setuid/setgid bits.
        fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))
            .map_err(|e| err(path, e))?;
    }
    for x in &entry.xattrs {
        xattr::set(path, OsStr::from_bytes(&x.name), &x.value).map_err(|e| err(path, e))?;
    }
    if !matches!(entry.kind, EntryKind::Dir { .. }) {
        set_mtime(path, entry)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, entry: &Entry) -> Result<()> {
    let t = TimeSpec::new(entry.mtime_secs, i64::from(entry.mtime_nanos));
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| err(path, e.into()))
}

/// Refuses to create anything whose parent is not a real directory: a
/// symlinked parent would send the write outside `root`.
fn check_parent(root: &Path, path: &Path, entry: &Entry, layer: &str) -> Result<()> {
    let Some(parent) = path.parent().filter(|_| path != root) else {
        return Ok(());
    };
    match fs::symlink_metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        _ => Err(ConvertError::BeneathNonDirectory {
            layer: layer.to_owned(),
            entry: String::from_utf8_lossy(&entry.path).into_owned(),
            ancestor: parent.display().to_string(),
        }),
    }
}

fn target_path(root: &Path, path: &[u8]) -> PathBuf {
    if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(path))
    }
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| err(path, e))
}

fn clear_dir(dir: &Path) -> Result<()> {
    for child in fs::read_dir(dir).map_err(|e| err(dir, e))? {
        remove_any(&child.map_err(|e| err(dir, e))?.path())?;
    }
    Ok(())
}

fn err(path: &Path, source: io::Error) -> ConvertError {
    ConvertError::Unpack {
        path: path.to_path_buf(),
        source,
    }
}

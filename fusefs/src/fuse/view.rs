//! The filesystem as the kernel sees it, computed from the attached layers:
//! attributes, lookups, directory listings, xattrs. No I/O here.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use lazy_format::{DeviceKind, Entry, EntryKind, Xattr};

use crate::fuse::error::FsError;
use crate::fuse::inode::{IMAGES_DIR, IMAGES_INO, InodeRef, ROOT_INO, decode, ino_of};
use crate::fuse::layer::AttachedLayer;

/// The overlayfs opaque-directory attribute shown on opaque dirs.
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Attached layers by slot.
#[derive(Debug, Default)]
pub struct LayerTable {
    layers: RwLock<BTreeMap<u32, Arc<AttachedLayer>>>,
    /// The layer digests of each image attached, bottom first.
    images: RwLock<Vec<Vec<String>>>,
    /// Flat image views by slot, each named by its digest field.
    flats: RwLock<BTreeMap<u32, Arc<AttachedLayer>>>,
}

/// A name in a directory listing.
#[derive(Debug, Clone)]
pub struct DirItem {
    /// Inode.
    pub ino: u64,
    /// Name.
    pub name: Vec<u8>,
    /// Attributes.
    pub attr: FileAttr,
}

impl LayerTable {
    /// Adds a layer in its slot; a taken slot is refused (its number is
    /// the error), never replaced: inodes of the layer in it would change.
    pub fn insert(&self, layer: Arc<AttachedLayer>) -> Result<(), u32> {
        let mut layers = self.layers.write().expect("layer table lock");
        match layers.entry(layer.slot) {
            std::collections::btree_map::Entry::Occupied(_) => Err(layer.slot),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(layer);
                Ok(())
            }
        }
    }

    /// How many layers are attached.
    pub fn len(&self) -> usize {
        self.layers.read().expect("layer table lock").len()
    }

    /// Removes a layer by digest; returns it.
    pub fn remove(&self, digest: &str) -> Option<Arc<AttachedLayer>> {
        let mut layers = self.layers.write().expect("layer table lock");
        let slot = layers.values().find(|l| l.digest == digest)?.slot;
        layers.remove(&slot)
    }

    /// The layer with this digest.
    pub fn by_digest(&self, digest: &str) -> Option<Arc<AttachedLayer>> {
        self.layers
            .read()
            .expect("layer table lock")
            .values()
            .find(|l| l.digest == digest)
            .cloned()
    }

    /// Notes an image's layers (digests, bottom first), for
    /// [`LayerTable::stack_of`].
    pub fn add_image(&self, layers: Vec<String>) {
        let mut images = self.images.write().expect("image list lock");
        if !images.contains(&layers) {
            images.push(layers);
        }
    }

    /// The attached layers of the first image noted with `layer`, top
    /// first: where its paths resolve. Just `layer` when none was noted
    /// (a layer attached alone, or before a restart).
    pub fn stack_of(&self, layer: &Arc<AttachedLayer>) -> Vec<Arc<AttachedLayer>> {
        let images = self.images.read().expect("image list lock");
        let Some(image) = images.iter().find(|i| i.contains(&layer.digest)) else {
            return vec![Arc::clone(layer)];
        };
        image
            .iter()
            .rev()
            .filter_map(|d| self.by_digest(d))
            .collect()
    }

    /// Adds a flat image view (`<mount>/images/<its digest>`), replacing
    /// one of the same name.
    pub fn insert_flat(&self, view: Arc<AttachedLayer>) {
        let mut flats = self.flats.write().expect("flat table lock");
        flats.retain(|_, v| v.digest != view.digest);
        flats.insert(view.slot, view);
    }

    /// Removes the flat views for which `doomed` holds.
    pub fn remove_flats(&self, doomed: impl Fn(&AttachedLayer) -> bool) {
        self.flats
            .write()
            .expect("flat table lock")
            .retain(|_, v| !doomed(v));
    }

    /// The flat image views.
    pub fn flats(&self) -> Vec<Arc<AttachedLayer>> {
        let flats = self.flats.read().expect("flat table lock");
        flats.values().cloned().collect()
    }

    fn flat_named(&self, name: &[u8]) -> Option<Arc<AttachedLayer>> {
        let flats = self.flats.read().expect("flat table lock");
        flats
            .values()
            .find(|v| v.digest.as_bytes() == name)
            .cloned()
    }

    /// Every attached layer.
    pub fn all(&self) -> Vec<Arc<AttachedLayer>> {
        self.layers
            .read()
            .expect("layer table lock")
            .values()
            .cloned()
            .collect()
    }

    /// Resolves an inode to its layer and entry index.
    pub fn locate(&self, ino: u64) -> Result<(Arc<AttachedLayer>, u32), FsError> {
        match decode(ino) {
            Some(InodeRef::Entry { slot, index }) => {
                let layer = self
                    .layers
                    .read()
                    .expect("layer table lock")
                    .get(&slot)
                    .cloned();
                let layer = layer
                    .or_else(|| {
                        self.flats
                            .read()
                            .expect("flat table lock")
                            .get(&slot)
                            .cloned()
                    })
                    .ok_or(FsError::NotFound)?;
                layer.entry(index).ok_or(FsError::NotFound)?;
                Ok((layer, index))
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: u64) -> Result<FileAttr, FsError> {
        if ino == ROOT_INO {
            return Ok(root_attr(
                self.layers.read().expect("layer table lock").len(),
            ));
        }
        if ino == IMAGES_INO {
            return Ok(images_attr(self.flats().len()));
        }
        let (layer, index) = self.locate(ino)?;
        Ok(entry_attr(&layer, layer.resolve(index)))
    }

    /// Looks up `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<FileAttr, FsError> {
        if parent == ROOT_INO && name == IMAGES_DIR {
            let flats = self.flats().len();
            return match flats {
                0 => Err(FsError::NotFound),
                n => Ok(images_attr(n)),
            };
        }
        if parent == IMAGES_INO {
            let view = self.flat_named(name).ok_or(FsError::NotFound)?;
            return Ok(entry_attr(&view, 0));
        }
        if parent == ROOT_INO {
            let name = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
            let layer = self.by_digest(name).ok_or(FsError::NotFound)?;
            return Ok(entry_attr(&layer, 0));
        }
        let (layer, dir) = self.locate(parent)?;
        if !matches!(
            layer.entry(dir).map(|e| &e.kind),
            Some(EntryKind::Dir { .. })
        ) {
            return Err(FsError::NotDir);
        }
        let child = layer.child(dir, name).ok_or(FsError::NotFound)?;
        Ok(entry_attr(&layer, layer.resolve(child)))
    }

    /// The listing of directory `ino`, `.` and `..` first, from item
    /// `from` on. The kernel asks once more past the end of every
    /// directory: that call builds nothing.
    pub fn readdir(&self, ino: u64, from: usize) -> Result<Vec<DirItem>, FsError> {
        if ino == ROOT_INO {
            let layers = self.all();
            let mut items = vec![
                dot(b".", root_attr(layers.len())),
                dot(b"..", root_attr(layers.len())),
            ];
            items.extend(layers.iter().map(|l| DirItem {
                ino: ino_of(l.slot, 0),
                name: l.digest.as_bytes().to_vec(),
                attr: entry_attr(l, 0),
            }));
            let flats = self.flats().len();
            if flats > 0 {
                items.push(dot(IMAGES_DIR, images_attr(flats)));
            }
            return Ok(items.split_off(from.min(items.len())));
        }
        if ino == IMAGES_INO {
            let flats = self.flats();
            let attr = images_attr(flats.len());
            let mut items = vec![dot(b".", attr), dot(b"..", root_attr(0))];
            items.extend(flats.iter().map(|v| DirItem {
                ino: ino_of(v.slot, 0),
                name: v.digest.as_bytes().to_vec(),
                attr: entry_attr(v, 0),
            }));
            return Ok(items.split_off(from.min(items.len())));
        }
        let (layer, dir) = self.locate(ino)?;
        if !matches!(
            layer.entry(dir).map(|e| &e.kind),
            Some(EntryKind::Dir { .. })
        ) {
            return Err(FsError::NotDir);
        }
        let children = layer.children(dir);
        if from >= children.len() + 2 {
            return Ok(Vec::new());
        }
        let parent_attr = match lazy_format::parent_of(&layer.entry(dir).expect("located").path) {
            None => root_attr(0),
            Some(p) => layer
                .index_of_path(p)
                .map_or_else(|| root_attr(0), |i| entry_attr(&layer, i)),
        };
        let mut items = vec![dot(b".", entry_attr(&layer, dir)), dot(b"..", parent_attr)];
        items.drain(..from.min(2));
        for &child in children.iter().skip(from.saturating_sub(2)) {
            let entry = layer.entry(child).expect("child index valid");
            let name = entry
                .path
                .rsplit(|b| *b == b'/')
                .next()
                .unwrap_or(&entry.path)
                .to_vec();
            let attr = entry_attr(&layer, layer.resolve(child));
            items.push(DirItem {
                ino: attr.ino.0,
                name,
                attr,
            });
        }
        Ok(items)
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let (layer, index) = self.locate(ino)?;
        match &layer.entry(index).expect("located").kind {
            EntryKind::Symlink { target } => Ok(target.clone()),
            _ => Err(FsError::NotSymlink),
        }
    }

    /// Extended attributes of an inode (the opaque marker included).
    pub fn xattrs(&self, ino: u64) -> Result<Vec<Xattr>, FsError> {
        if ino == ROOT_INO || ino == IMAGES_INO {
            return Ok(Vec::new());
        }
        let (layer, index) = self.locate(ino)?;
        let entry = layer.entry(layer.resolve(index)).expect("located");
        let mut out = entry.xattrs.clone();
        if matches!(entry.kind, EntryKind::Dir { opaque: true })
            && !out.iter().any(|x| x.name == OPAQUE_XATTR)
        {
            out.push(Xattr {
                name: OPAQUE_XATTR.to_vec(),
                value: b"y".to_vec(),
            });
        }
        Ok(out)
    }
}

fn dot(name: &[u8], attr: FileAttr) -> DirItem {
    DirItem {
        ino: attr.ino.0,
        name: name.to_vec(),
        attr,
    }
}

fn time(secs: i64, nanos: u32) -> SystemTime {
    let whole = Duration::from_secs(secs.unsigned_abs());
    let base = if secs >= 0 {
        UNIX_EPOCH + whole
    } else {
        UNIX_EPOCH - whole
    };
    base + Duration::from_nanos(u64::from(nanos))
}

fn root_attr(layers: usize) -> FileAttr {
    FileAttr {
        ino: INodeNo(ROOT_INO),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2 + u32::try_from(layers).unwrap_or(u32::MAX - 2),
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn images_attr(views: usize) -> FileAttr {
    FileAttr {
        ino: INodeNo(IMAGES_INO),
        ..root_attr(views)
    }
}

/// Attributes of entry `index` (already resolved past hardlinks).
pub fn entry_attr(layer: &AttachedLayer, index: u32) -> FileAttr {
    let entry: &Entry = layer.entry(index).expect("valid entry index");
    let (kind, size, rdev) = match &entry.kind {
        EntryKind::Dir { .. } => (FileType::Directory, 4096, 0),
        EntryKind::File { size, .. } => (FileType::RegularFile, *size, 0),
        EntryKind::Symlink { target } => (FileType::Symlink, target.len() as u64, 0),
        EntryKind::Device { kind, major, minor } => {
            let ft = if *kind == DeviceKind::Char {
                FileType::CharDevice
            } else {
                FileType::BlockDevice
            };
            (ft, 0, dev_number(*major, *minor))
        }
        EntryKind::Fifo => (FileType::NamedPipe, 0, 0),
        EntryKind::Socket => (FileType::Socket, 0, 0),
        // overlayfs reads a 0:0 character device as a whiteout.
        EntryKind::Whiteout => (FileType::CharDevice, 0, 0),
        // resolve() follows links; an unresolvable one shows as an empty file.
        EntryKind::Hardlink { .. } => (FileType::RegularFile, 0, 0),
    };
    let t = time(entry.mtime_secs, entry.mtime_nanos);
    FileAttr {
        ino: INodeNo(ino_of(layer.slot, index)),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: u16::try_from(entry.mode & 0o7777).expect("mode masked to 12 bits"),
        nlink: layer.nlink(index),
        uid: entry.uid,
        gid: entry.gid,
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// The kernel's encoding of a device number (new_encode_dev).
fn dev_number(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::layer::{NoSource, test_entry as entry};
    use lazy_format::LayerMeta;

    /// A layer whose directory `d` holds `n` empty files.
    fn table_with_dir_of(n: usize) -> (LayerTable, u64) {
        let dir = || EntryKind::Dir { opaque: false };
        let mut entries = vec![entry(b"", dir()), entry(b"d", dir())];
        for i in 0..n {
            let file = EntryKind::File {
                size: 0,
                chunks: Vec::new(),
            };
            entries.push(entry(format!("d/f{i:04}").as_bytes(), file));
        }
        let meta = LayerMeta {
            entries,
            chunks: Vec::new(),
        };
        let table = LayerTable::default();
        table
            .insert(Arc::new(AttachedLayer::new(
                "sha256:test".into(),
                1,
                meta,
                0,
                Arc::new(NoSource),
            )))
            .unwrap();
        (table, ino_of(1, 1))
    }

    #[test]
    fn a_taken_slot_is_refused_not_replaced() {
        let (table, _) = table_with_dir_of(1);
        let other = AttachedLayer::new(
            "sha256:other".into(),
            1,
            LayerMeta {
                entries: vec![],
                chunks: Vec::new(),
            },
            0,
            Arc::new(NoSource),
        );
        assert_eq!(table.insert(Arc::new(other)), Err(1));
        assert_eq!(table.by_digest("sha256:test").map(|l| l.slot), Some(1));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn listings_continue_from_any_offset_and_end_empty() {
        let (table, dir) = table_with_dir_of(300);
        let all = table.readdir(dir, 0).unwrap();
        assert_eq!(all.len(), 302, ". and .. and 300 files");
        let names = |items: &[DirItem]| items.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        for from in [1, 2, 3, 150, 301] {
            assert_eq!(
                names(&table.readdir(dir, from).unwrap()),
                names(&all[from..]),
                "from {from}"
            );
        }
        assert!(table.readdir(dir, 302).unwrap().is_empty());
        assert!(table.readdir(dir, usize::MAX).unwrap().is_empty());
        assert_eq!(table.readdir(ROOT_INO, 3).unwrap().len(), 0);
        assert_eq!(table.readdir(ROOT_INO, 2).unwrap().len(), 1, "the layer");
    }
}

//! The fuser adapter: each callback asks the [`LayerTable`] or the cache
//! and answers; errors become errnos in one place ([`FsError::errno`]).
//! Reads run on the tokio runtime so that many can wait on fetches at once.

pub(crate) mod error;
pub(crate) mod flat;
pub(crate) mod inode;
pub(crate) mod layer;
mod nearby;
pub(crate) mod passthrough;
mod read;
pub(crate) mod view;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};
use lazy_cache::ChunkCache;
use lazy_format::{ChunkRecord, EntryKind};

use crate::fuse::error::FsError;
use crate::fuse::inode::{IMAGES_INO, ROOT_INO};
use crate::fuse::passthrough::{BackingTable, Opened};
use crate::fuse::view::{DirItem, LayerTable};
use crate::recorder::Recorder;

/// Content is immutable: the kernel may cache names and attributes for long.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The filesystem handed to fuser.
pub struct LazyFuse {
    /// Attached layers.
    pub table: Arc<LayerTable>,
    /// The shared chunk cache.
    pub cache: ChunkCache,
    /// Runtime for reads.
    pub runtime: tokio::runtime::Handle,
    /// Notes reads while a prefetch recording runs.
    pub recorder: Arc<Recorder>,
    /// Fetch the shared libraries an ELF object needs when its head is
    /// first read (see `crate::libs`).
    pub libraries: bool,
    /// After a miss, fetch the rest of a file up to 2 MiB and a small
    /// file's small neighbours (see `nearby`).
    pub nearby: bool,
    /// Passthrough handles; `None` when disabled or the kernel lacks it.
    pub passthrough: Option<BackingTable>,
    /// The kernel copes with OPENDIR answered by ENOSYS (set at init).
    pub zero_message_opendir: bool,
    /// OPEN is answered by ENOSYS: the kernel copes and no passthrough
    /// needs a handle (set at init).
    pub zero_message_open: bool,
    /// What the kernel offered at INIT, kept for a daemon that takes the
    /// session over (see `crate::takeover`).
    pub offer: Arc<std::sync::Mutex<Option<crate::takeover::SessionParams>>>,
}

/// Directory items from the kernel's `offset` on (as listed by
/// [`LayerTable::readdir`]), each with the offset of the item after it
/// (what the kernel passes back to continue).
fn with_next_offsets(items: &[DirItem], offset: u64) -> impl Iterator<Item = (u64, &DirItem)> {
    (offset.saturating_add(1)..).zip(items)
}

impl LazyFuse {
    /// The chunks of file `ino`, in order (`None` if it is no file).
    fn file_chunks(&self, ino: u64) -> Option<Vec<ChunkRecord>> {
        let (layer, index) = self.table.locate(ino).ok()?;
        let index = layer.resolve(index);
        let EntryKind::File { size, .. } = layer.entry(index)?.kind else {
            return None;
        };
        Some(layer.chunks_for(index, 0, size).records)
    }

    /// The cached file holding all of file `ino`, for passthrough: its only
    /// chunk, or the whole-file copy of its chunks. A file of several
    /// chunks, all cached but not yet copied, is queued for the copy.
    fn backing_file(&self, ino: u64) -> Option<std::path::PathBuf> {
        let chunks = self.file_chunks(ino)?;
        let path = match chunks.as_slice() {
            [only] => {
                (self.cache.contains(&only.digest)).then(|| self.cache.chunk_path(&only.digest))
            }
            _ => self.cache.assembled(&chunks),
        };
        match path {
            // Its reads will not reach lazyfsd: count them now.
            Some(_) => self.cache.note_read(&chunks),
            None if chunks.len() > 1 => {
                self.cache.assemble_later(&chunks);
            }
            None => {}
        }
        path
    }
}

impl Filesystem for LazyFuse {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        *self.offer.lock().expect("offer lock") = Some(crate::takeover::SessionParams::of(config));
        // Each flag saves round trips; take those the kernel offers.
        for flag in [
            // Directory listings always carry attributes, so that walking a
            // tree needs no lookup per name (measured: READDIRPLUS_AUTO, which
            // lets the kernel choose, walks the r-base tree 2x slower).
            fuser::InitFlags::FUSE_DO_READDIRPLUS,
            // Lookups in one directory run in parallel.
            fuser::InitFlags::FUSE_PARALLEL_DIROPS,
            // Symlink targets stay in the page cache.
            fuser::InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!("kernel lacks {flag:?}");
            }
        }
        self.zero_message_opendir = config
            .capabilities()
            .contains(fuser::InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        if self.passthrough.is_some() {
            // Stack depth 1 lets overlayfs use this mount as a lower dir.
            let ok = config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
                && config.set_max_stack_depth(1).is_ok();
            if !ok {
                tracing::info!("kernel offers no FUSE passthrough; reads go through lazyfsd");
                self.passthrough = None;
            }
        }
        // Without passthrough a file handle carries nothing: spare the
        // OPEN and RELEASE round trips (426 in a warm R start).
        self.zero_message_open = self.passthrough.is_none()
            && config
                .capabilities()
                .contains(fuser::InitFlags::FUSE_NO_OPEN_SUPPORT);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.table.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            // Inside a layer nothing ever appears: the kernel may remember
            // the miss (an entry with inode 0 is a negative dentry). Programs
            // probe many absent paths, each once per lower layer through
            // overlayfs. Not at the root or in images/, where layers and
            // views come and go.
            Err(FsError::NotFound) if parent.0 != ROOT_INO && parent.0 != IMAGES_INO => {
                reply.entry(&TTL, &negative_entry(), Generation(0));
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.table.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.table.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.table.getattr(ino.0) {
            Ok(attr) if attr.kind == FileType::RegularFile => {
                if self.zero_message_open {
                    // The kernel then opens every file itself, as if
                    // answered with FOPEN_KEEP_CACHE.
                    return reply.error(fuser::Errno::ENOSYS);
                }
                let Some(table) = &self.passthrough else {
                    return reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
                };
                // A recording must see every read: no passthrough meanwhile.
                let recording = self.recorder.is_recording();
                let opened = table.open(ino.0, || {
                    if recording {
                        return None;
                    }
                    let path = self.backing_file(ino.0)?;
                    Some(std::fs::File::open(path).and_then(|f| reply.open_backing(f)))
                });
                match opened {
                    // The kernel refuses passthrough opens with any flag
                    // outside FOPEN_PASSTHROUGH_MASK, FOPEN_KEEP_CACHE included.
                    Opened::Passthrough(fh, id) => {
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
                    }
                    Opened::Cached(fh) => {
                        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
                    }
                }
            }
            Ok(_) => reply.error(FsError::IsDir.errno()),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Directories have no handle state: ENOSYS tells kernels that know
        // FUSE_NO_OPENDIR_SUPPORT to stop sending OPENDIR/RELEASEDIR at all.
        if self.zero_message_opendir {
            reply.error(fuser::Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        if let Some(table) = &self.passthrough {
            table.release(fh.0);
            // A file read through the daemon may be all cached now (once
            // the chunks just fetched are stored): copy it whole so that
            // its next open can be passthrough.
            if let Some(chunks) = self.file_chunks(ino.0).filter(|c| c.len() > 1) {
                let cache = self.cache.clone();
                self.runtime.spawn(async move {
                    cache.settled().await;
                    cache.assemble_later(&chunks);
                });
            }
        }
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn_read(ino.0, offset, size, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self
            .table
            .readdir(ino.0, usize::try_from(offset).unwrap_or(usize::MAX))
        {
            Ok(items) => {
                for (next, item) in with_next_offsets(&items, offset) {
                    if reply.add(
                        INodeNo(item.ino),
                        next,
                        item.attr.kind,
                        OsStr::from_bytes(&item.name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self
            .table
            .readdir(ino.0, usize::try_from(offset).unwrap_or(usize::MAX))
        {
            Ok(items) => {
                for (next, item) in with_next_offsets(&items, offset) {
                    let name = OsStr::from_bytes(&item.name);
                    if reply.add(
                        INodeNo(item.ino),
                        next,
                        name,
                        &TTL,
                        &item.attr,
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e.errno()),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, chunks) = self.cache.usage();
        reply.statfs(bytes / 4096, 0, 0, chunks as u64, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = self.table.xattrs(ino.0).and_then(|attrs| {
            attrs
                .into_iter()
                .find(|x| x.name.as_slice() == name.as_bytes())
                .map(|x| x.value)
                .ok_or(FsError::NoAttr)
        });
        reply_xattr(value, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = self.table.xattrs(ino.0).map(|attrs| {
            attrs
                .into_iter()
                .flat_map(|x| {
                    let mut n = x.name;
                    n.push(0);
                    n
                })
                .collect()
        });
        reply_xattr(names, size, reply);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        // Read-only, nothing to flush: ENOSYS makes the kernel stop sending
        // FLUSH on every close (a round trip per file a container opens).
        reply.error(fuser::Errno::ENOSYS);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // overlayfs asks lower files for their inode flags (FS_IOC_GETFLAGS)
        // on copy-up; ENOTTY is "no such ioctl here", which it accepts.
        reply.error(fuser::Errno::ENOTTY);
    }

    fn access(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mask: fuser::AccessFlags,
        reply: fuser::ReplyEmpty,
    ) {
        // Mounted with default_permissions: the kernel checks modes itself.
        reply.ok();
    }
}

/// What the kernel takes for "no such name": inode 0.
fn negative_entry() -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: std::time::UNIX_EPOCH,
        mtime: std::time::UNIX_EPOCH,
        ctime: std::time::UNIX_EPOCH,
        crtime: std::time::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// getxattr/listxattr protocol: size 0 asks for the length.
fn reply_xattr(value: Result<Vec<u8>, FsError>, size: u32, reply: ReplyXattr) {
    match value {
        Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
        Ok(v) if v.len() > size as usize => reply.error(FsError::Range.errno()),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e.errno()),
    }
}

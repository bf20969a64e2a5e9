//! The additional layer store of Podman and CRI-O (containers/storage's
//! `additionallayerstores = ["<path>:ref"]`), served as a FUSE mount of its
//! own. A pull looks up `<base64 ref>/<digest>/` with `diff`, `info` and
//! `blob` in it; the lookup attaches the layer and the pull skips its
//! download. `diff` links to the layer in the main mount.

mod attach;
mod info;
mod journal;
mod tree;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fuser::{
    Config, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request, SessionACL,
};

use crate::state::DaemonState;
use crate::takeover::{self, Handover, Offer, SessionParams};
use attach::StoreAttacher;
use tree::{Lookup, Node, StoreLayer, StoreTree};

/// Names never change meaning; only attaches add names.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The store's filesystem.
struct LayerStoreFs {
    tree: Arc<StoreTree>,
    attacher: Arc<StoreAttacher>,
    runtime: tokio::runtime::Handle,
    /// The main mount, where `diff` links point.
    mountpoint: PathBuf,
    /// The kernel's INIT offer, kept for a daemon taking the mount over.
    offer: Offer,
}

/// Mounts the store at `how.mountpoint`, or takes its live mount over; it
/// lives as long as the returned session.
pub(crate) fn mount(
    state: Arc<DaemonState>,
    runtime: tokio::runtime::Handle,
    mountpoint: &Path,
    how: Handover<'_>,
) -> anyhow::Result<fuser::BackgroundSession> {
    let path = how.mountpoint;
    let journal = how.cache_dir.join("store-tree.json");
    let tree = match how.taken {
        Some(_) => {
            let table = state.table();
            let restored = StoreTree::restore(&journal, |digest| {
                let layer = table.by_digest(digest)?;
                Some(StoreLayer {
                    info: info::layer_info(&layer),
                    diff: mountpoint.join(&layer.digest),
                    layer,
                })
            });
            // Without it the mount still works; names the kernel had
            // looked up answer ENOENT until they leave its cache.
            restored.unwrap_or_else(|e| {
                tracing::error!("restoring the layer store's names: {e:#}");
                StoreTree::journaled(&journal)
            })
        }
        None => {
            crate::daemon::clean_stale_mount(path)?;
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
            StoreTree::journaled(&journal)
        }
    };
    let fs = LayerStoreFs {
        tree: Arc::new(tree),
        attacher: Arc::new(StoreAttacher::new(state)),
        runtime,
        mountpoint: mountpoint.to_owned(),
        offer: Offer::default(),
    };
    let offer = Arc::clone(&fs.offer);
    let mut config = Config::default();
    // Not read-only: storage creates `use` (answered ENOENT, which it
    // expects) and a read-only mount would fail that with EROFS.
    config.mount_options = vec![
        MountOption::FSName("lazyfs-store".into()),
        MountOption::Subtype("lazyfs".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::All;
    // Lookups that attach are answered from the runtime, not these threads.
    config.n_threads = Some(2);
    // Supervised, requests are read from the descriptor the supervisor holds.
    config.clone_fd = false;
    takeover::start_session(fs, &offer, config, how)
        .with_context(|| format!("serving the layer store at {}", path.display()))
}

impl LayerStoreFs {
    /// Attaches a layer on the runtime and answers the lookup from there:
    /// a pull asks for several layers at once, each a registry round trip.
    fn attach_and_reply(&self, parent: u64, reference: String, digest: String, reply: ReplyEntry) {
        let (tree, attacher) = (Arc::clone(&self.tree), Arc::clone(&self.attacher));
        let mountpoint = self.mountpoint.clone();
        self.runtime.spawn(async move {
            match attacher.layer(&reference, &digest).await {
                Ok(layer) => {
                    let store_layer = StoreLayer {
                        info: info::layer_info(&layer),
                        diff: mountpoint.join(&layer.digest),
                        layer,
                    };
                    let ino = tree.add_layer(parent, store_layer);
                    match tree.attr(ino) {
                        Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
                        None => reply.error(Errno::EIO),
                    }
                }
                // Storage takes any error for "not here" and downloads the
                // layer instead; ENOENT says exactly that, and is not cached.
                Err(e) => {
                    tracing::info!(%reference, %digest, "layer store: not served: {e}");
                    reply.error(Errno::ENOENT);
                }
            }
        });
    }
}

impl Filesystem for LayerStoreFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        *self.offer.lock().expect("offer lock") = Some(SessionParams::of(config));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name.as_bytes()) {
            Lookup::Found(ino) => match self.tree.attr(ino) {
                Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
                None => reply.error(Errno::EIO),
            },
            Lookup::Attach { reference, digest } => {
                self.attach_and_reply(parent.0, reference, digest, reply);
            }
            Lookup::Missing => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.node(ino.0) {
            Some(Node::Diff(layer)) => reply.data(layer.diff.as_os_str().as_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & nix::libc::O_ACCMODE != nix::libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.tree.node(ino.0) {
            Some(Node::Info(_) | Node::Blob(_)) => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
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
        match self.tree.node(ino.0) {
            Some(Node::Info(layer)) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(layer.info.len());
                let end = start.saturating_add(size as usize).min(layer.info.len());
                reply.data(&layer.info[start..end]);
            }
            Some(Node::Blob(layer)) => {
                let end = offset
                    .saturating_add(u64::from(size))
                    .min(layer.layer.blob_size);
                if offset >= end {
                    return reply.data(&[]);
                }
                self.runtime.spawn(async move {
                    match layer.layer.source.read_range(offset..end).await {
                        Ok(bytes) => reply.data(&bytes),
                        Err(e) => {
                            tracing::warn!(digest = %layer.layer.digest, "layer store: reading the blob: {e}");
                            reply.error(Errno::EIO);
                        }
                    }
                });
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(items) = self.tree.list(ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        for (next, (ino, name, attr)) in (offset.saturating_add(1)..).zip(items.iter().skip(from)) {
            if reply.add(INodeNo(*ino), next, attr.kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        // Storage creates `use` to say a layer is in use, and takes ENOENT
        // as "noted". The layer stays attached until `lazyctl detach`.
        reply.error(Errno::ENOENT);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush; ENOSYS stops the kernel sending FLUSH at all.
        reply.error(Errno::ENOSYS);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        // Files are always ready; ENOSYS makes the kernel say so itself
        // (Podman polls `info` as it reads it).
        reply.error(Errno::ENOSYS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        // Storage "releases" a layer by removing its directory and expects
        // ENOENT. Nothing is removed: other images may share the layer.
        reply.error(Errno::ENOENT);
    }
}

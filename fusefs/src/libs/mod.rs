//! Shared libraries ahead of the dynamic linker. When a process reads the
//! head of an ELF object that was not cached, the linker is about to open
//! its needed libraries one after another, each costing a round trip or
//! two (its headers, then its data segment). Instead, lazyfsd reads the
//! object's dynamic section itself, resolves the needed libraries in the
//! image as ld.so does (the object's RUNPATH/RPATH, the image's
//! `/etc/ld.so.cache`, the default directories) and fetches what the
//! linker will read of each (headers and writable segments) all at once,
//! level by level down the dependency tree.

mod elf;
mod ldcache;
mod resolve;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use lazy_cache::ChunkCache;
use lazy_format::{EntryKind, parent_of};

use crate::fuse::layer::AttachedLayer;
use crate::fuse::view::LayerTable;
use elf::{Dynamic, Segments};
use ldcache::LdCache;
use resolve::{Found, join, resolve_file};

/// Objects one scan looks at, at most: a dependency tree is tens.
const MAX_OBJECTS: usize = 256;
/// Objects read at once by one scan.
const IN_FLIGHT: usize = 8;
/// Files up to this size are fetched whole at once (one request): the
/// linker reads their head and their data segment at the end.
const WHOLE_BELOW: u64 = 1 << 20;
/// What is read of a bigger object's head to find its program headers.
const HEAD_BYTES: u64 = 64 << 10;
/// Bytes of one segment or table read at most.
const MAX_RANGE: u64 = 4 << 20;
/// Where ld.so looks last (x86-64 and arm64 Debian-style multiarch, then
/// the plain directories).
const DEFAULT_DIRS: [&[u8]; 6] = [
    b"/lib/x86_64-linux-gnu",
    b"/usr/lib/x86_64-linux-gnu",
    b"/lib/aarch64-linux-gnu",
    b"/usr/lib/aarch64-linux-gnu",
    b"/lib64",
    b"/usr/lib",
];

/// Starts fetching the libraries that the ELF object `index` of `layer`
/// needs, on the runtime, unless it was scanned before.
pub fn spawn_scan(
    runtime: &tokio::runtime::Handle,
    table: &LayerTable,
    cache: &ChunkCache,
    layer: Arc<AttachedLayer>,
    index: u32,
) {
    if !layer.first_scan(index) {
        return;
    }
    let stack = table.stack_of(&layer);
    let scan = Scan {
        cache: cache.clone(),
        stack,
    };
    runtime.spawn(async move { scan.run((layer, index)).await });
}

/// What an object makes the linker load next.
#[derive(Debug, Default)]
struct Needs {
    /// The interpreter's path (`PT_INTERP`).
    interp: Option<Vec<u8>>,
    /// Needed libraries' names (`DT_NEEDED`).
    names: Vec<Vec<u8>>,
    /// The object's own search path, `$ORIGIN` filled in.
    dirs: Vec<Vec<u8>>,
}

/// One dependency walk in one image.
struct Scan {
    cache: ChunkCache,
    /// The image's layers, top first.
    stack: Vec<Arc<AttachedLayer>>,
}

impl Scan {
    async fn run(self, root: Found) {
        // The root's own reads need no library cache: both at once.
        let (ld_cache, root_needs) = tokio::join!(self.ld_cache(), self.needs(root));
        let mut seen = 1;
        let mut queue = Vec::new();
        let mut reading = FuturesUnordered::new();
        let mut found = self.locate_all(&root_needs, &ld_cache);
        loop {
            for (layer, index) in found {
                if seen < MAX_OBJECTS && layer.first_scan(index) {
                    seen += 1;
                    queue.push((layer, index));
                }
            }
            while reading.len() < IN_FLIGHT
                && let Some(object) = queue.pop()
            {
                reading.push(self.needs(object));
            }
            let Some(needs) = reading.next().await else {
                break;
            };
            found = self.locate_all(&needs, &ld_cache);
        }
        tracing::debug!(
            target: "lazyfs::libs",
            objects = seen,
            ld_cache = ld_cache.len(),
            "shared libraries fetched ahead"
        );
    }

    /// The image's library cache; empty when it has none.
    async fn ld_cache(&self) -> LdCache {
        let Some((layer, index)) = resolve_file(&self.stack, b"/etc/ld.so.cache") else {
            return LdCache::default();
        };
        let size = file_size(&layer, index);
        match self.read(&layer, index, 0..size).await {
            Some(bytes) => LdCache::parse(&bytes),
            None => LdCache::default(),
        }
    }

    /// Fetches what the linker reads of `object` and returns what it loads
    /// next (its interpreter and needed libraries).
    async fn needs(&self, (layer, index): Found) -> Needs {
        let size = file_size(&layer, index);
        let head_len = if size <= WHOLE_BELOW {
            size
        } else {
            HEAD_BYTES
        };
        // A bigger object's writable segment (and dynamic section) is most
        // often in its last chunk: fetched with the head, it saves a round
        // trip on each level of the tree.
        let tail = match size > head_len {
            true => chunks_in(&layer, index, size - 1..size),
            false => Vec::new(),
        };
        let (head, _) = tokio::join!(
            self.read(&layer, index, 0..head_len),
            self.cache.ensure(&layer.source, &tail),
        );
        let mut needs = Needs::default();
        let Some(head) = head else {
            return needs;
        };
        let Some(segments) = Segments::parse(&head) else {
            return needs;
        };
        let writable: Vec<_> = segments
            .writable()
            .flat_map(|r| chunks_in(&layer, index, clamp(r, size)))
            .collect();
        let (_, dynamic) = tokio::join!(
            self.cache.ensure(&layer.source, &writable),
            self.read_opt(&layer, index, segments.dynamic.clone(), size),
        );
        needs.interp = segments
            .interp
            .clone()
            .and_then(|interp| head.get(as_usize(clamp(interp, head.len() as u64))))
            .and_then(|path| elf::c_string(path, 0));
        let Some(dynamic) = dynamic else {
            return needs;
        };
        let dynamic = Dynamic::parse(&dynamic, &segments);
        let Some(strtab) = self
            .read_opt(&layer, index, dynamic.strtab.clone(), size)
            .await
        else {
            return needs;
        };
        let (names, runpath) = dynamic.names(&strtab);
        let path = layer.entry(index).map_or(&[][..], |e| e.path.as_slice());
        let origin = parent_of(path).unwrap_or(b"");
        needs.dirs = runpath.iter().map(|d| expand_origin(d, origin)).collect();
        needs.names = names;
        needs
    }

    /// The objects `needs` names, found in the image.
    fn locate_all(&self, needs: &Needs, ld_cache: &LdCache) -> Vec<Found> {
        let interp = needs
            .interp
            .as_ref()
            .and_then(|path| resolve_file(&self.stack, path));
        let libraries = needs
            .names
            .iter()
            .filter_map(|name| self.locate(name, &needs.dirs, ld_cache));
        interp.into_iter().chain(libraries).collect()
    }

    /// Where ld.so finds library `name`: the object's search path, the
    /// library cache, the default directories.
    fn locate(&self, name: &[u8], dirs: &[Vec<u8>], ld_cache: &LdCache) -> Option<Found> {
        if name.contains(&b'/') {
            return resolve_file(&self.stack, name);
        }
        let in_dir = |dir: &[u8]| resolve_file(&self.stack, &join(dir, name));
        dirs.iter()
            .find_map(|d| in_dir(d))
            .or_else(|| {
                ld_cache
                    .get(name)
                    .and_then(|p| resolve_file(&self.stack, p))
            })
            .or_else(|| DEFAULT_DIRS.iter().find_map(|d| in_dir(d)))
    }

    async fn read_opt(
        &self,
        layer: &Arc<AttachedLayer>,
        index: u32,
        range: Option<Range<u64>>,
        size: u64,
    ) -> Option<Vec<u8>> {
        self.read(layer, index, clamp(range?, size)).await
    }

    /// Bytes `range` of file `index` (at most `MAX_RANGE`), through the
    /// cache; `None` when it cannot be read.
    async fn read(&self, layer: &AttachedLayer, index: u32, range: Range<u64>) -> Option<Vec<u8>> {
        let len = range.end.saturating_sub(range.start).min(MAX_RANGE);
        if len == 0 {
            return None;
        }
        let span = layer.chunks_for(index, range.start, len);
        let len = usize::try_from(len).ok()?;
        match self
            .cache
            .read(&layer.source, &span.records, span.skip, len)
            .await
        {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::debug!(target: "lazyfs::libs", layer = %layer.digest, "reading ahead: {e}");
                None
            }
        }
    }
}

/// The chunks of file `index` holding `range` (at most `MAX_RANGE` of it).
fn chunks_in(
    layer: &AttachedLayer,
    index: u32,
    range: Range<u64>,
) -> Vec<lazy_format::ChunkRecord> {
    let len = range.end.saturating_sub(range.start).min(MAX_RANGE);
    match len {
        0 => Vec::new(),
        _ => layer.chunks_for(index, range.start, len).records,
    }
}

fn file_size(layer: &AttachedLayer, index: u32) -> u64 {
    match layer.entry(index).map(|e| &e.kind) {
        Some(EntryKind::File { size, .. }) => *size,
        _ => 0,
    }
}

/// `range` within `0..size`.
fn clamp(range: Range<u64>, size: u64) -> Range<u64> {
    range.start.min(size)..range.end.min(size)
}

/// A range clamped to a slice's length, for indexing it.
fn as_usize(range: Range<u64>) -> Range<usize> {
    let cut = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    cut(range.start)..cut(range.end)
}

/// A search path entry with `$ORIGIN` (the object's directory) filled in.
fn expand_origin(dir: &[u8], origin: &[u8]) -> Vec<u8> {
    let mut root_origin = b"/".to_vec();
    root_origin.extend_from_slice(origin);
    let mut out = Vec::with_capacity(dir.len());
    let mut rest = dir;
    while !rest.is_empty() {
        if let Some(after) = rest
            .strip_prefix(b"${ORIGIN}")
            .or_else(|| rest.strip_prefix(b"$ORIGIN"))
        {
            out.extend_from_slice(&root_origin);
            rest = after;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// Per layer: which objects were scanned already.
#[derive(Debug, Default)]
pub struct Scanned(std::sync::Mutex<HashSet<u32>>);

impl Scanned {
    /// Marks `index`; whether it was not marked before.
    pub fn first(&self, index: u32) -> bool {
        self.0.lock().expect("scanned set lock").insert(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_the_objects_directory() {
        assert_eq!(
            expand_origin(b"$ORIGIN/../lib", b"usr/lib/R/bin"),
            b"/usr/lib/R/bin/../lib"
        );
        assert_eq!(expand_origin(b"${ORIGIN}", b""), b"/");
        assert_eq!(expand_origin(b"/opt/lib", b"x"), b"/opt/lib");
    }
}

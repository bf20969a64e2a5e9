//! Paths in an image's merged view (its layers, top first), as overlayfs
//! shows them: the topmost layer holding a name wins, a whiteout hides it,
//! symbolic links are followed. Opaque directories are not honoured: a
//! lower layer's file under one is still found (costing a needless fetch
//! at worst, never a wrong read: this only guides prefetching).

use std::collections::VecDeque;
use std::sync::Arc;

use lazy_format::{EntryKind, parent_of};

use crate::fuse::layer::AttachedLayer;

/// Symbolic links followed in one lookup at most, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// A file of the image: its layer and entry index.
pub type Found = (Arc<AttachedLayer>, u32);

/// The regular file at `path` (absolute, or relative to the root).
pub fn resolve_file(stack: &[Arc<AttachedLayer>], path: &[u8]) -> Option<Found> {
    let mut pending: VecDeque<Vec<u8>> = components(path).collect();
    let mut current: Vec<u8> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == b".." {
            current = parent_of(&current).unwrap_or(b"").to_vec();
            continue;
        }
        let candidate = join(&current, &name);
        let (layer, index) = topmost(stack, &candidate)?;
        match &layer.entry(index)?.kind {
            EntryKind::Symlink { target } => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                if target.starts_with(b"/") {
                    current.clear();
                }
                for part in components(target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
            }
            EntryKind::Dir { .. } => current = candidate,
            EntryKind::File { .. } if pending.is_empty() => return Some((layer, index)),
            _ => return None,
        }
    }
    None
}

/// The entry at `path` in the topmost layer that has one, hardlinks
/// followed; `None` when absent or whited out.
fn topmost(stack: &[Arc<AttachedLayer>], path: &[u8]) -> Option<Found> {
    for layer in stack {
        if let Some(index) = layer.index_of_path(path) {
            let index = layer.resolve(index);
            return match layer.entry(index)?.kind {
                EntryKind::Whiteout => None,
                _ => Some((Arc::clone(layer), index)),
            };
        }
    }
    None
}

fn components(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::layer::{test_entry, test_layer};
    use lazy_format::Entry;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        test_entry(path.as_bytes(), kind)
    }
    fn dir(path: &str) -> Entry {
        entry(path, EntryKind::Dir { opaque: false })
    }
    fn file(path: &str) -> Entry {
        entry(
            path,
            EntryKind::File {
                size: 0,
                chunks: Vec::new(),
            },
        )
    }
    fn link(path: &str, target: &str) -> Entry {
        let target = target.as_bytes().to_vec();
        entry(path, EntryKind::Symlink { target })
    }
    fn layer(slot: u32, mut entries: Vec<Entry>) -> Arc<AttachedLayer> {
        entries.insert(0, dir(""));
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        test_layer(slot, entries)
    }
    fn found(stack: &[Arc<AttachedLayer>], path: &str) -> Option<(u32, String)> {
        resolve_file(stack, path.as_bytes()).map(|(l, i)| {
            let path = String::from_utf8(l.entry(i).unwrap().path.clone()).unwrap();
            (l.slot, path)
        })
    }

    #[test]
    fn follows_links_across_layers_and_honours_whiteouts() {
        // Merged /usr: /lib -> usr/lib in the base; a library and its
        // version link in the base, replaced above; an alternative's link
        // chain through /etc; a whiteout hiding a base file.
        let base = layer(
            1,
            vec![
                link("lib", "usr/lib"),
                dir("usr"),
                dir("usr/lib"),
                file("usr/lib/libz.so.1.2"),
                link("usr/lib/libz.so.1", "libz.so.1.2"),
                file("usr/lib/gone.so"),
                dir("usr/lib/blas"),
                file("usr/lib/blas/libblas.so.3"),
                dir("etc"),
                link("etc/blas", "/usr/lib/blas/libblas.so.3"),
                link("loop", "loop"),
            ],
        );
        let top = layer(
            2,
            vec![
                dir("usr"),
                dir("usr/lib"),
                file("usr/lib/libz.so.1.2"),
                entry("usr/lib/gone.so", EntryKind::Whiteout),
                link("usr/lib/libblas.so.3", "../../etc/blas"),
            ],
        );
        let stack = [top, base];
        assert_eq!(
            found(&stack, "/lib/libz.so.1"),
            Some((2, "usr/lib/libz.so.1.2".into()))
        );
        assert_eq!(
            found(&stack, "/lib/libblas.so.3"),
            Some((1, "usr/lib/blas/libblas.so.3".into()))
        );
        assert_eq!(found(&stack, "/usr/lib/gone.so"), None, "whited out");
        assert_eq!(found(&stack, "/usr/lib"), None, "a directory");
        assert_eq!(
            found(&stack, "/usr/lib/libz.so.1.2/x"),
            None,
            "below a file"
        );
        assert_eq!(found(&stack, "/loop"), None, "a link loop ends");
        assert_eq!(found(&stack, "/missing.so"), None);
    }
}

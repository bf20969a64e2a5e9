//! The additional layer store's names and inodes, as containers/storage
//! walks them: `<base64 image reference>/<layer digest>/{diff,info,blob}`.
//! Every node is virtual; `diff` is a symlink into the main mount, so a
//! layer's files are the same inodes and cache whichever way they are read.
//! No I/O here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::UNIX_EPOCH;

use base64::Engine;
use fuser::{FileAttr, FileType, INodeNo};
use lazy_oci::Reference;

use super::journal::{Journal, Saved};
use crate::fuse::layer::AttachedLayer;

/// The store's root directory.
pub const STORE_ROOT: u64 = 1;

/// One layer as the store shows it.
#[derive(Debug)]
pub struct StoreLayer {
    /// The attached layer (its blob is read through its source).
    pub layer: Arc<AttachedLayer>,
    /// Where its files are: `<mountpoint>/<digest>`.
    pub diff: PathBuf,
    /// The `info` file's bytes.
    pub info: Vec<u8>,
}

/// What an inode is.
#[derive(Debug, Clone)]
pub enum Node {
    /// The store's root: one directory per image reference asked for.
    Root,
    /// `<base64 reference>/`: one directory per layer asked for.
    Image {
        /// The decoded reference.
        reference: String,
    },
    /// `<reference>/<digest>/`.
    Layer,
    /// `…/diff`, a symlink to the layer in the main mount.
    Diff(Arc<StoreLayer>),
    /// `…/info`, the layer record containers/storage imports.
    Info(Arc<StoreLayer>),
    /// `…/blob`, the layer blob, read from the registry.
    Blob(Arc<StoreLayer>),
    /// A restored node whose layer is no longer attached: its inode stays
    /// taken, and answers ENOENT.
    Gone,
}

/// The files of a layer directory, in inode order after the directory.
const LAYER_FILES: [&str; 3] = ["diff", "info", "blob"];

/// What a name under a directory turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A node that exists.
    Found(u64),
    /// A layer not in the tree yet: attach `digest` of `reference`.
    Attach {
        /// The image reference of the parent directory.
        reference: String,
        /// The layer digest asked for.
        digest: String,
    },
    /// Nothing by that name, ever.
    Missing,
}

#[derive(Debug, Default)]
struct Inner {
    /// Node of inode `i + 1`.
    nodes: Vec<(u64, Vec<u8>, Node)>,
    /// Children by (parent inode, name).
    names: HashMap<(u64, Vec<u8>), u64>,
    /// Where added nodes are saved, if anywhere.
    journal: Option<Journal>,
}

/// The store's tree; nodes are added on lookup and never removed, so an
/// inode always means the same thing.
#[derive(Debug)]
pub struct StoreTree {
    inner: RwLock<Inner>,
}

impl Default for StoreTree {
    fn default() -> Self {
        let inner = Inner {
            nodes: vec![(STORE_ROOT, Vec::new(), Node::Root)],
            ..Inner::default()
        };
        Self {
            inner: RwLock::new(inner),
        }
    }
}

impl StoreTree {
    /// An empty tree that saves what lookups add to `journal`.
    pub fn journaled(journal: &Path) -> Self {
        let tree = Self::default();
        tree.inner.write().expect("store tree lock").journal = Some(Journal::new(journal));
        tree
    }

    /// The tree saved in `journal`, each layer from `layer_of(digest)`
    /// (`None`: no longer attached, its inodes answer ENOENT); it goes on
    /// saving there.
    pub fn restore(
        journal: &Path,
        layer_of: impl Fn(&str) -> Option<StoreLayer>,
    ) -> anyhow::Result<Self> {
        let saved = Journal::load(journal)?;
        let tree = Self::journaled(journal);
        for node in saved {
            match node {
                Saved::Image { name } => {
                    tree.lookup(STORE_ROOT, name.as_bytes());
                }
                Saved::Layer { parent, digest } => match layer_of(&digest) {
                    Some(layer) => {
                        tree.add_layer(parent, layer);
                    }
                    None => tree.add_gone_layer(parent, &digest),
                },
            }
        }
        Ok(tree)
    }

    /// The node of inode `ino`.
    pub fn node(&self, ino: u64) -> Option<Node> {
        let index = usize::try_from(ino.checked_sub(1)?).ok()?;
        let inner = self.inner.read().expect("store tree lock");
        match inner.nodes.get(index) {
            Some((_, _, Node::Gone)) | None => None,
            Some((_, _, node)) => Some(node.clone()),
        }
    }

    /// Resolves `name` in directory `parent`. An image directory appears
    /// for any name that decodes to an image reference.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Lookup {
        if let Some(ino) = self.child(parent, name) {
            return match self.node(ino) {
                Some(_) => Lookup::Found(ino),
                None => Lookup::Missing,
            };
        }
        match self.node(parent) {
            Some(Node::Root) => match decode_reference(name) {
                Some(reference) => Lookup::Found(self.add_image(name, reference)),
                None => Lookup::Missing,
            },
            Some(Node::Image { reference }) => match std::str::from_utf8(name) {
                Ok(digest) if is_digest(digest) => Lookup::Attach {
                    reference,
                    digest: digest.to_owned(),
                },
                _ => Lookup::Missing,
            },
            _ => Lookup::Missing,
        }
    }

    /// Adds the directory of an attached layer under image directory
    /// `parent` (or finds the one a concurrent lookup added).
    pub fn add_layer(&self, parent: u64, layer: StoreLayer) -> u64 {
        let name = layer.layer.digest.as_bytes().to_vec();
        let mut inner = self.inner.write().expect("store tree lock");
        if let Some(ino) = inner.names.get(&(parent, name.clone())) {
            return *ino;
        }
        let digest = layer.layer.digest.clone();
        let layer = Arc::new(layer);
        let dir = inner.insert(parent, name, Node::Layer);
        let files = [
            Node::Diff(Arc::clone(&layer)),
            Node::Info(Arc::clone(&layer)),
            Node::Blob(layer),
        ];
        for (file, node) in LAYER_FILES.iter().zip(files) {
            inner.insert(dir, file.as_bytes().to_vec(), node);
        }
        inner.save(Saved::Layer { parent, digest });
        dir
    }

    /// Takes the inodes of a restored layer directory that is gone.
    fn add_gone_layer(&self, parent: u64, digest: &str) {
        let mut inner = self.inner.write().expect("store tree lock");
        let dir = inner.insert(parent, digest.as_bytes().to_vec(), Node::Gone);
        for file in LAYER_FILES {
            inner.insert(dir, file.as_bytes().to_vec(), Node::Gone);
        }
        inner.save(Saved::Layer {
            parent,
            digest: digest.to_owned(),
        });
    }

    /// The entries of directory `ino`: (inode, name, attributes).
    pub fn list(&self, ino: u64) -> Option<Vec<(u64, Vec<u8>, FileAttr)>> {
        let node = self.node(ino)?;
        if !matches!(node, Node::Root | Node::Image { .. } | Node::Layer) {
            return None;
        }
        let inner = self.inner.read().expect("store tree lock");
        let (parent, _, _) = inner.nodes.get(usize::try_from(ino - 1).ok()?)?;
        let mut items = vec![
            (ino, b".".to_vec(), attr_of(ino, &node)),
            (*parent, b"..".to_vec(), attr_of(*parent, &Node::Root)),
        ];
        // Index 0 is the root, its own parent.
        for (i, (p, name, child)) in inner.nodes.iter().enumerate().skip(1) {
            if *p == ino && !matches!(child, Node::Gone) {
                let child_ino = ino_of_index(i);
                items.push((child_ino, name.clone(), attr_of(child_ino, child)));
            }
        }
        Some(items)
    }

    /// Attributes of inode `ino`.
    pub fn attr(&self, ino: u64) -> Option<FileAttr> {
        self.node(ino).map(|node| attr_of(ino, &node))
    }

    fn child(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let inner = self.inner.read().expect("store tree lock");
        inner.names.get(&(parent, name.to_vec())).copied()
    }

    /// Adds image directory `name` to the root (or finds it).
    fn add_image(&self, name: &[u8], reference: String) -> u64 {
        let mut inner = self.inner.write().expect("store tree lock");
        if let Some(ino) = inner.names.get(&(STORE_ROOT, name.to_vec())) {
            return *ino;
        }
        let ino = inner.insert(STORE_ROOT, name.to_vec(), Node::Image { reference });
        inner.save(Saved::Image {
            name: String::from_utf8_lossy(name).into_owned(),
        });
        ino
    }
}

impl Inner {
    fn save(&mut self, node: Saved) {
        if let Some(journal) = &mut self.journal {
            journal.add(node);
        }
    }

    /// Adds `node` as `name` in `parent`; returns its inode.
    fn insert(&mut self, parent: u64, name: Vec<u8>, node: Node) -> u64 {
        let ino = ino_of_index(self.nodes.len());
        self.nodes.push((parent, name.clone(), node));
        self.names.insert((parent, name), ino);
        ino
    }
}

/// The inode of node index `i`.
fn ino_of_index(i: usize) -> u64 {
    u64::try_from(i).unwrap_or(u64::MAX - 1) + 1
}

/// The image reference a directory name stands for: standard base64
/// (with padding) of e.g. `registry:5000/repo:tag`, as containers/storage
/// writes it.
pub fn decode_reference(name: &[u8]) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(name)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.parse::<Reference>().ok()?;
    Some(text)
}

/// `sha256:` and 64 lowercase hex digits.
fn is_digest(name: &str) -> bool {
    name.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Attributes of a node, all read-only. Only root may enter the store: a
/// lookup there attaches images, which only root may do (as through the
/// control socket). Containers never pass through it: overlayfs resolves
/// `diff` to the main mount once, when root mounts the container.
pub fn attr_of(ino: u64, node: &Node) -> FileAttr {
    let (kind, perm, size) = match node {
        Node::Root => (FileType::Directory, 0o700, 0),
        Node::Image { .. } | Node::Layer => (FileType::Directory, 0o555, 0),
        Node::Diff(l) => (FileType::Symlink, 0o777, l.diff.as_os_str().len() as u64),
        Node::Info(l) => (FileType::RegularFile, 0o444, l.info.len() as u64),
        Node::Blob(l) => (FileType::RegularFile, 0o444, l.layer.blob_size),
        Node::Gone => (FileType::RegularFile, 0, 0),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::layer::NoSource;
    use lazy_format::LayerMeta;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn encoded(reference: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(reference)
            .into_bytes()
    }

    fn store_layer() -> StoreLayer {
        let meta = LayerMeta {
            entries: Vec::new(),
            chunks: Vec::new(),
        };
        StoreLayer {
            layer: Arc::new(AttachedLayer::new(
                DIGEST.into(),
                1,
                meta,
                1234,
                Arc::new(NoSource),
            )),
            diff: PathBuf::from("/mnt/lazyfs").join(DIGEST),
            info: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_reference_directory_appears_for_any_valid_reference() {
        let tree = StoreTree::default();
        let name = encoded("localhost:5000/sample:lazy");
        let Lookup::Found(dir) = tree.lookup(STORE_ROOT, &name) else {
            panic!("no directory for a valid reference");
        };
        assert_eq!(
            tree.lookup(STORE_ROOT, &name),
            Lookup::Found(dir),
            "same inode again"
        );
        assert!(
            matches!(tree.node(dir), Some(Node::Image { reference }) if reference == "localhost:5000/sample:lazy")
        );
        for bad in [
            &b"not base64!"[..],
            &encoded("UPPER/Case:tag"),
            &encoded("a b/c:d"),
        ] {
            assert_eq!(tree.lookup(STORE_ROOT, bad), Lookup::Missing, "{bad:?}");
        }
    }

    #[test]
    fn a_layer_is_attached_once_then_found_with_its_files() {
        let tree = StoreTree::default();
        let Lookup::Found(image) = tree.lookup(STORE_ROOT, &encoded("localhost:5000/a:b")) else {
            panic!("no image directory");
        };
        assert_eq!(
            tree.lookup(image, DIGEST.as_bytes()),
            Lookup::Attach {
                reference: "localhost:5000/a:b".into(),
                digest: DIGEST.into()
            }
        );
        for bad in ["sha256:abc", "use", "sha512:00", &DIGEST.to_uppercase()] {
            assert_eq!(tree.lookup(image, bad.as_bytes()), Lookup::Missing, "{bad}");
        }
        let dir = tree.add_layer(image, store_layer());
        assert_eq!(
            tree.add_layer(image, store_layer()),
            dir,
            "a second add finds the first"
        );
        assert_eq!(tree.lookup(image, DIGEST.as_bytes()), Lookup::Found(dir));
        let names: Vec<Vec<u8>> = tree
            .list(dir)
            .unwrap()
            .into_iter()
            .map(|(_, n, _)| n)
            .collect();
        assert_eq!(names, [&b"."[..], b"..", b"diff", b"info", b"blob"]);
        let Lookup::Found(diff) = tree.lookup(dir, b"diff") else {
            panic!("no diff");
        };
        assert_eq!(tree.attr(diff).unwrap().kind, FileType::Symlink);
        let Lookup::Found(blob) = tree.lookup(dir, b"blob") else {
            panic!("no blob");
        };
        assert_eq!(tree.attr(blob).unwrap().size, 1234);
        assert_eq!(tree.lookup(dir, b"use"), Lookup::Missing);
        let root: Vec<u64> = tree
            .list(STORE_ROOT)
            .unwrap()
            .into_iter()
            .map(|(i, _, _)| i)
            .collect();
        assert_eq!(root, [STORE_ROOT, STORE_ROOT, image]);
        assert!(tree.list(blob).is_none(), "a file has no listing");
        assert!(tree.node(0).is_none() && tree.node(999).is_none());
    }

    #[test]
    fn a_restored_tree_gives_every_inode_the_same_meaning() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("store-tree.json");
        let tree = StoreTree::journaled(&journal);
        let Lookup::Found(a) = tree.lookup(STORE_ROOT, &encoded("localhost:5000/a:b")) else {
            panic!("no image directory");
        };
        let Lookup::Found(c) = tree.lookup(STORE_ROOT, &encoded("localhost:5000/c:d")) else {
            panic!("no image directory");
        };
        let in_a = tree.add_layer(a, store_layer());
        let in_c = tree.add_layer(c, store_layer());
        let listing = |tree: &StoreTree, ino| -> Vec<(u64, Vec<u8>)> {
            let items = tree.list(ino).unwrap().into_iter();
            items.map(|(i, n, _)| (i, n)).collect()
        };

        let restored = StoreTree::restore(&journal, |_| Some(store_layer())).unwrap();
        for ino in [STORE_ROOT, a, c, in_a, in_c] {
            assert_eq!(listing(&restored, ino), listing(&tree, ino), "inode {ino}");
        }
        let blob = in_c + 3;
        assert_eq!(restored.attr(blob).unwrap().size, 1234);

        // A layer detached meanwhile keeps its inodes, which answer ENOENT;
        // what a lookup adds next takes the next inode, as before.
        let gone = StoreTree::restore(&journal, |_| None).unwrap();
        assert!(gone.node(in_a).is_none() && gone.attr(in_a + 3).is_none());
        assert_eq!(gone.lookup(a, DIGEST.as_bytes()), Lookup::Missing);
        assert_eq!(listing(&gone, a).len(), 2, "only . and ..");
        let Lookup::Found(e) = gone.lookup(STORE_ROOT, &encoded("localhost:5000/e:f")) else {
            panic!("no image directory");
        };
        assert_eq!(e, in_c + 4);
        // The journal now holds the new directory too.
        let again = StoreTree::restore(&journal, |_| None).unwrap();
        assert_eq!(
            again.lookup(STORE_ROOT, &encoded("localhost:5000/e:f")),
            Lookup::Found(e)
        );

        assert!(StoreTree::restore(&dir.path().join("absent"), |_| None).is_err());
    }
}

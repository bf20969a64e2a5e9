//! Compares two directory trees entry by entry: type, mode, owner, mtime,
//! content, symlink target, device numbers, xattrs and hardlink identity.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// What the comparison looks at for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds); `None` where not compared.
    pub mtime: Option<(i64, i64)>,
    /// sha256 of a regular file's content, a symlink's target, or the device number.
    pub content: String,
    /// Sorted extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Other paths of the tree that share this entry's inode, sorted.
    pub hardlinks: Vec<Vec<u8>>,
}

/// Summarizes every entry under `root`, keyed by relative path bytes.
/// Directory mtimes are compared too: the unpackers set them last.
pub fn summarize(root: &Path) -> Result<BTreeMap<Vec<u8>, EntrySummary>> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    walk(root, root, &mut out, &mut inodes)?;
    for paths in inodes.values().filter(|p| p.len() > 1) {
        for path in paths {
            let others: Vec<Vec<u8>> = paths.iter().filter(|p| *p != path).cloned().collect();
            out.get_mut(path).expect("walked path").hardlinks = others;
        }
    }
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<Vec<u8>, EntrySummary>,
    inodes: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
) -> Result<()> {
    let mut children: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        let content = if ft.is_file() {
            let mut hasher = Sha256::new();
            let mut file = fs::File::open(&path)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            hex::encode(hasher.finalize())
        } else if ft.is_symlink() {
            String::from_utf8_lossy(fs::read_link(&path)?.as_os_str().as_bytes()).into_owned()
        } else if meta.rdev() != 0 {
            format!("rdev {}", meta.rdev())
        } else {
            String::new()
        };
        if ft.is_file() {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        let mut xattrs = Vec::new();
        for name in xattr::list(&path)? {
            let value = xattr::get(&path, &name)?.unwrap_or_default();
            xattrs.push((name.as_bytes().to_vec(), value));
        }
        xattrs.sort();
        out.insert(
            rel,
            EntrySummary {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: Some((meta.mtime(), meta.mtime_nsec())),
                content,
                xattrs,
                hardlinks: Vec::new(),
            },
        );
        if ft.is_dir() {
            walk(root, &path, out, inodes)?;
        }
    }
    Ok(())
}

/// Human-readable differences between the trees at `expected` and `actual`
/// (empty when they are equal).
pub fn diff_trees(expected: &Path, actual: &Path) -> Result<Vec<String>> {
    let a = summarize(expected)?;
    let b = summarize(actual)?;
    let mut diffs = Vec::new();
    let show = |p: &[u8]| OsStr::from_bytes(p).to_string_lossy().into_owned();
    for (path, ea) in &a {
        match b.get(path) {
            None => diffs.push(format!("{}: missing", show(path))),
            Some(eb) if eb != ea => {
                diffs.push(format!("{}: expected {ea:?}, got {eb:?}", show(path)))
            }
            Some(_) => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("{}: unexpected", show(path)));
    }
    Ok(diffs)
}

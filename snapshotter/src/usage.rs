//! Disk usage of a snapshot's own directory, as `du` counts it: bytes of
//! allocated blocks and inodes, hard links once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::store::DiskUsage;

/// Walks `dir` (not following symlinks); a missing dir uses nothing.
pub fn disk_usage(dir: &Path) -> std::io::Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    let mut seen = HashSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_inodes_once_per_hard_link() {
        let dir = tempfile::tempdir().unwrap();
        let empty = disk_usage(dir.path()).unwrap();
        assert_eq!(empty.inodes, 1);
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let usage = disk_usage(dir.path()).unwrap();
        assert_eq!(usage.inodes, 2, "the dir and one file");
        assert!(usage.size - empty.size >= 100_000);
        assert_eq!(
            disk_usage(&dir.path().join("gone")).unwrap(),
            DiskUsage::default()
        );
    }
}

//! Writing a store directory. Objects are immutable: one that exists is
//! not written again. Every file appears by rename, so a web server never
//! serves half of one, and a publish that stops midway leaves a valid
//! store (with some objects no tag reaches yet).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::layout::{MARKER, MARKER_CONTENT, object_path, pieces_path, tag_path};
use crate::pieces::PieceTable;

/// A store directory opened for writing.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    root: PathBuf,
}

impl StoreWriter {
    /// Opens `root`, creating it as an empty store if it does not exist. A
    /// non-empty directory that is not a store is refused.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let marker = root.join(MARKER);
        match fs::read_to_string(&marker) {
            Ok(content) if content == MARKER_CONTENT => {}
            Ok(content) => {
                let format = content.trim();
                return Err(io::Error::other(format!(
                    "{} is a store of another format ({format:?})",
                    root.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::read_dir(root)?.next().is_some() {
                    return Err(io::Error::other(format!(
                        "{} is not empty and not a lazyfs store",
                        root.display()
                    )));
                }
                write_file(&marker, MARKER_CONTENT.as_bytes())?;
            }
            Err(e) => return Err(e),
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores `bytes` as an object; returns its digest and whether it was new.
    pub fn put_object(&self, bytes: &[u8]) -> io::Result<(String, bool)> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let path = self
            .root
            .join(object_path(&digest).map_err(io::Error::other)?);
        if path.exists() {
            return Ok((digest, false));
        }
        write_file(&path, bytes)?;
        Ok((digest, true))
    }

    /// Whether object `digest` is stored.
    pub fn has_object(&self, digest: &str) -> bool {
        object_path(digest).is_ok_and(|p| self.root.join(p).exists())
    }

    /// Stores the piece table of layer blob `layer_digest`.
    pub fn put_pieces(&self, layer_digest: &str, table: &PieceTable) -> io::Result<()> {
        let path = pieces_path(layer_digest).map_err(io::Error::other)?;
        write_file(&self.root.join(path), &table.encode())
    }

    /// Points `repository:tag` at manifest `digest`.
    pub fn put_tag(&self, repository: &str, tag: &str, digest: &str) -> io::Result<()> {
        let path = self.root.join(tag_path(repository, tag));
        write_file(&path, format!("{digest}\n").as_bytes())
    }
}

/// Writes `path` whole by rename, readable by a web server (0644).
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_tags_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = StoreWriter::open(&root).unwrap();
        let (digest, new) = store.put_object(b"hello").unwrap();
        assert!(new);
        assert!(store.has_object(&digest));
        assert_eq!(store.put_object(b"hello").unwrap(), (digest.clone(), false));
        let path = root.join(object_path(&digest).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644);
        store.put_tag("a/b", "t", &digest).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("tags/a/b/t")).unwrap(),
            format!("{digest}\n")
        );
        StoreWriter::open(&root).expect("reopens");

        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("x"), "y").unwrap();
        let err = StoreWriter::open(&other).unwrap_err().to_string();
        assert!(err.contains("not a lazyfs store"), "{err}");
    }
}

//! OCI image-layout directories: `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`, read with the same checks as a registry and written
//! crash-safely (temp file, then rename).
//!
//! Writers of one layout must not run concurrently: `index.json` updates are
//! atomic but not merged.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType};

use crate::OciError;
use crate::digest::{sha256_digest, validate_digest, verify_bytes};
use crate::manifest::{
    DocumentKind, FetchedManifest, MANIFEST_SIZE_LIMIT, MAX_INDEX_DEPTH, OCI_INDEX, classify,
    parse_index, parse_manifest, select_linux_amd64,
};
use crate::reference::is_valid_tag;

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";
const INDEX_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// An OCI image-layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutHeader {
    image_layout_version: String,
}

impl OciLayout {
    /// Opens an existing layout; its `oci-layout` file must declare version 1.0.0.
    pub fn open(dir: &Path) -> Result<Self, OciError> {
        let header_path = dir.join(LAYOUT_FILE);
        let text = match std::fs::read(&header_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::Layout {
                    path: dir.to_owned(),
                    reason: "not an OCI image layout (no oci-layout file)",
                });
            }
            Err(e) => return Err(OciError::io(header_path, e)),
        };
        let header: LayoutHeader =
            serde_json::from_slice(&text).map_err(|source| OciError::InvalidDocument {
                kind: "oci-layout file",
                what: header_path.display().to_string(),
                source,
            })?;
        if header.image_layout_version != LAYOUT_VERSION {
            return Err(OciError::Layout {
                path: header_path,
                reason: "unsupported imageLayoutVersion (expected 1.0.0)",
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Opens the layout at `dir`, creating the directory, `oci-layout`, an
    /// empty `index.json` and `blobs/sha256/` where missing.
    pub fn create(dir: &Path) -> Result<Self, OciError> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| OciError::io(&blobs, e))?;
        let header = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);
        write_if_missing(&dir.join(LAYOUT_FILE), header.as_bytes())?;
        let index = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        write_if_missing(&dir.join(INDEX_FILE), index.as_bytes())?;
        Self::open(dir)
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves `tag` through `index.json` to an image manifest, following
    /// nested indexes to linux/amd64, verifying every document read.
    pub fn resolve(&self, tag: &str) -> Result<FetchedManifest, OciError> {
        let index = self.read_index()?;
        let mut descriptor = index
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(tag))
            .cloned()
            .ok_or_else(|| OciError::LayoutTagNotFound {
                dir: self.dir.clone(),
                tag: tag.to_owned(),
            })?;
        for _ in 0..MAX_INDEX_DEPTH {
            let digest = descriptor.digest().to_string();
            let what = format!("oci:{}:{tag} ({digest})", self.dir.display());
            let bytes = self.read_blob(&digest, MANIFEST_SIZE_LIMIT)?;
            let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if size != descriptor.size() {
                return Err(OciError::SizeMismatch {
                    what,
                    expected: descriptor.size(),
                    actual: size,
                });
            }
            let declared = descriptor.media_type().to_string();
            let (kind, media_type) = classify(Some(&declared), &bytes, &what)?;
            match kind {
                DocumentKind::Manifest => {
                    return Ok(FetchedManifest {
                        manifest: parse_manifest(&bytes, &what)?,
                        digest,
                        media_type,
                        bytes,
                    });
                }
                DocumentKind::Index => descriptor = select_linux_amd64(&bytes, &what)?,
            }
        }
        Err(OciError::Layout {
            path: self.dir.join(INDEX_FILE),
            reason: "image indexes nested too deeply",
        })
    }

    /// `blobs/sha256/<hex>` for a valid digest.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = validate_digest(digest)?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// Reads a whole blob of at most `max_size` bytes and verifies its digest.
    pub fn read_blob(&self, digest: &str, max_size: u64) -> Result<Vec<u8>, OciError> {
        let path = self.blob_path(digest)?;
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::LayoutBlobNotFound {
                    dir: self.dir.clone(),
                    digest: digest.to_owned(),
                });
            }
            Err(e) => return Err(OciError::io(path, e)),
        };
        let mut bytes = Vec::new();
        file.take(max_size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::io(&path, e))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_size {
            return Err(OciError::TooLarge {
                what: path.display().to_string(),
                limit: max_size,
            });
        }
        verify_bytes(&path.display().to_string(), digest, &bytes)?;
        Ok(bytes)
    }

    /// Whether the layout has blob `digest` (false for invalid digests).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Stores `data` as a blob (if not present) and returns its digest.
    pub fn write_blob_bytes(&self, data: &[u8]) -> Result<String, OciError> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.is_file() {
            self.write_atomically(&path, |file| std::io::Write::write_all(file, data))?;
        }
        Ok(digest)
    }

    /// Moves a file whose sha256 the caller already computed into the layout
    /// as blob `digest`: renamed when on the same file system (the file is
    /// then gone from `path`), else copied (`path` is left in place). Nothing
    /// happens when the blob is present. The content is not hashed again.
    pub fn import_blob_file(&self, digest: &str, path: &Path) -> Result<(), OciError> {
        let dest = self.blob_path(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        match std::fs::rename(path, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                let mut source = std::fs::File::open(path).map_err(|e| OciError::io(path, e))?;
                self.write_atomically(&dest, |file| std::io::copy(&mut source, file).map(drop))
            }
            Err(e) => Err(OciError::io(path, e)),
        }
    }

    /// Stores a manifest blob and names it `tag` in `index.json`, replacing
    /// any entry of the same name. Returns the manifest digest.
    pub fn put_manifest(
        &self,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, OciError> {
        if !is_valid_tag(tag) {
            return Err(OciError::InvalidLocation {
                input: tag.to_owned(),
                reason: "tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
            });
        }
        let digest = self.write_blob_bytes(bytes)?;
        let oci_digest = Digest::from_str(&digest).map_err(|_| OciError::InvalidDigest {
            digest: digest.clone(),
            reason: "not accepted by oci-spec",
        })?;
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let mut descriptor = Descriptor::new(MediaType::from(media_type), size, oci_digest);
        descriptor.set_annotations(Some(HashMap::from([(
            REF_NAME_ANNOTATION.to_owned(),
            tag.to_owned(),
        )])));
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        manifests.retain(|d| ref_name(d) != Some(tag));
        manifests.push(descriptor);
        index.set_manifests(manifests);
        let json =
            serde_json::to_vec_pretty(&index).map_err(|source| OciError::InvalidDocument {
                kind: "index.json",
                what: self.dir.display().to_string(),
                source,
            })?;
        self.write_atomically(&self.dir.join(INDEX_FILE), |file| {
            std::io::Write::write_all(file, &json)
        })?;
        Ok(digest)
    }

    fn read_index(&self) -> Result<ImageIndex, OciError> {
        let path = self.dir.join(INDEX_FILE);
        let file = std::fs::File::open(&path).map_err(|e| OciError::io(&path, e))?;
        let mut bytes = Vec::new();
        file.take(INDEX_SIZE_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::io(&path, e))?;
        parse_index(&bytes, &path.display().to_string())
    }

    /// Writes `dest` through a synced temp file in the layout, then renames it.
    fn write_atomically(
        &self,
        dest: &Path,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), OciError> {
        let dir = dest.parent().unwrap_or(&self.dir);
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(|e| OciError::io(dir, e))?;
        write(temp.as_file_mut()).map_err(|e| OciError::io(temp.path(), e))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| OciError::io(temp.path(), e))?;
        temp.persist(dest)
            .map_err(|e| OciError::io(dest, e.error))?;
        Ok(())
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .map(String::as_str)
}

fn write_if_missing(path: &Path, content: &[u8]) -> Result<(), OciError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, content).map_err(|e| OciError::io(path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OciError::io(path, e)),
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;

//! One interface over the places images live: a registry repository, an
//! OCI image-layout directory, or an HTTP content-addressed store (read only).

use std::ops::Range;
use std::path::Path;

use lazy_cas::CasClient;
use lazy_oci::{
    BlobStream, FetchedManifest, ImageLocation, OciError, OciLayout, Reference, RegistryClient,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// An image's home, opened for reading and writing.
#[derive(Debug, Clone)]
pub enum ImageStore {
    /// A registry repository; the reference's tag or digest picks the image.
    Registry {
        /// Shared client.
        client: RegistryClient,
        /// The image.
        reference: Reference,
    },
    /// An OCI layout directory; `tag` picks the image.
    Layout {
        /// The layout.
        layout: OciLayout,
        /// The image's `ref.name`.
        tag: String,
    },
    /// An HTTP content-addressed store (written by `lazyctl publish`); the
    /// reference's registry is the store's name.
    Cas {
        /// The store.
        client: CasClient,
        /// The image.
        reference: Reference,
    },
}

impl ImageStore {
    /// Opens an existing image location for reading.
    pub fn open(location: &ImageLocation, client: &RegistryClient) -> Result<Self, OciError> {
        Ok(match location {
            ImageLocation::Registry(reference) => Self::Registry {
                client: client.clone(),
                reference: reference.clone(),
            },
            ImageLocation::Layout { dir, tag } => Self::Layout {
                layout: OciLayout::open(dir)?,
                tag: tag.clone(),
            },
        })
    }

    /// Opens a location for writing, creating a layout directory if needed.
    pub fn create(location: &ImageLocation, client: &RegistryClient) -> Result<Self, OciError> {
        match location {
            ImageLocation::Layout { dir, tag } => Ok(Self::Layout {
                layout: OciLayout::create(dir)?,
                tag: tag.clone(),
            }),
            ImageLocation::Registry(_) => Self::open(location, client),
        }
    }

    /// The resolved (linux/amd64) manifest.
    pub async fn fetch_manifest(&self) -> Result<FetchedManifest, OciError> {
        match self {
            Self::Registry { client, reference } => client.fetch_manifest(reference).await,
            Self::Layout { layout, tag } => layout.resolve(tag),
            Self::Cas { client, reference } => {
                let digest = match &reference.digest {
                    Some(digest) => digest.clone(),
                    None => {
                        let tag = reference.tag_or_digest();
                        client.resolve_tag(&reference.repository, &tag).await?
                    }
                };
                client.fetch_manifest(&digest).await
            }
        }
    }

    /// A small blob, whole and verified.
    pub async fn fetch_blob(&self, digest: &str, max_size: u64) -> Result<Vec<u8>, OciError> {
        match self {
            Self::Registry { client, reference } => {
                client.fetch_blob(reference, digest, max_size).await
            }
            Self::Layout { layout, .. } => layout.read_blob(digest, max_size),
            Self::Cas { client, .. } => client.blob(digest, max_size).await,
        }
    }

    /// The size of a blob if the store has it.
    pub async fn blob_size(&self, digest: &str) -> Result<Option<u64>, OciError> {
        match self {
            Self::Registry { client, reference } => client.blob_exists(reference, digest).await,
            Self::Layout { layout, .. } => {
                let path = layout.blob_path(digest)?;
                match std::fs::metadata(&path) {
                    Ok(meta) => Ok(Some(meta.len())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(OciError::Io { path, source }),
                }
            }
            Self::Cas { client, .. } => client.blob_size(digest).await,
        }
    }

    /// A blob as a stream that verifies size and digest at its end.
    pub async fn open_blob(&self, digest: &str, size: u64) -> Result<BlobStream, OciError> {
        match self {
            Self::Registry { client, reference } => client.open_blob(reference, digest, size).await,
            Self::Layout { layout, .. } => {
                let path = layout.blob_path(digest)?;
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|source| OciError::Io { path, source })?;
                Ok(BlobStream::new(file, digest, size))
            }
            Self::Cas { client, .. } => {
                let bytes = client.read_range(digest, 0..size).await?;
                Ok(BlobStream::new(std::io::Cursor::new(bytes), digest, size))
            }
        }
    }

    /// Bytes `range` of a blob (not verified: callers check what they read).
    pub async fn read_range(&self, digest: &str, range: Range<u64>) -> Result<Vec<u8>, OciError> {
        match self {
            Self::Registry { client, reference } => {
                client.read_range(reference, digest, range).await
            }
            Self::Layout { layout, .. } => {
                let path = layout.blob_path(digest)?;
                let io = |source| OciError::Io {
                    path: path.clone(),
                    source,
                };
                let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(io)?;
                let len = usize::try_from(range.end.saturating_sub(range.start))
                    .map_err(|_| io(std::io::Error::other("range too large")))?;
                let mut buf = vec![0u8; len];
                file.read_exact(&mut buf).await.map_err(io)?;
                Ok(buf)
            }
            Self::Cas { client, .. } => client.read_range(digest, range).await,
        }
    }

    /// Stores a blob from a file whose digest the caller computed.
    pub async fn push_blob_file(&self, digest: &str, path: &Path) -> Result<(), OciError> {
        match self {
            Self::Registry { client, reference } => client
                .push_blob_file(reference, digest, path)
                .await
                .map(drop),
            Self::Layout { layout, .. } => layout.import_blob_file(digest, path),
            Self::Cas { client, .. } => Err(read_only(client)),
        }
    }

    /// Stores a small blob.
    pub async fn push_blob_bytes(&self, digest: &str, data: Vec<u8>) -> Result<(), OciError> {
        match self {
            Self::Registry { client, reference } => client
                .push_blob_bytes(reference, digest, data)
                .await
                .map(drop),
            Self::Layout { layout, .. } => layout.write_blob_bytes(&data).map(drop),
            Self::Cas { client, .. } => Err(read_only(client)),
        }
    }

    /// Stores the manifest under the location's tag; returns its digest.
    pub async fn put_manifest(&self, media_type: &str, bytes: Vec<u8>) -> Result<String, OciError> {
        match self {
            Self::Registry { client, reference } => {
                client.put_manifest(reference, media_type, bytes).await
            }
            Self::Layout { layout, tag } => layout.put_manifest(tag, media_type, &bytes),
            Self::Cas { client, .. } => Err(read_only(client)),
        }
    }

    /// A directory for temporary blobs: inside the layout (so finished blobs
    /// are renamed into place), else the system temp dir.
    pub fn temp_dir(&self) -> std::path::PathBuf {
        match self {
            Self::Layout { layout, .. } => layout.dir().to_path_buf(),
            Self::Registry { .. } | Self::Cas { .. } => std::env::temp_dir(),
        }
    }
}

fn read_only(client: &CasClient) -> OciError {
    OciError::Store {
        store: client.name().to_owned(),
        reason: "stores are read only here: write them with `lazyctl publish`".into(),
    }
}

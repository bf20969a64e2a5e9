//! Reading lazy images: per-layer metadata (`inspect`) and full
//! materialization (`unpack`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use lazy_format::{
    FOOTER_LEN, FORMAT_ANNOTATION, Footer, LAYER_MEDIA_TYPE, LayerMeta, LayerStats,
    META_LENGTH_ANNOTATION, META_OFFSET_ANNOTATION, decode_tail,
};
use lazy_oci::FetchedManifest;
use lazy_oci::spec::Descriptor;

use crate::image_error::ImageError;
use crate::store::ImageStore;
use crate::unpack_layer;

/// One lazy layer as `inspect` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerInspection {
    /// Blob digest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// Bytes of `[metadata][footer]`.
    pub meta_bytes: u64,
    /// Counts of entries, files and chunks.
    pub stats: LayerStats,
}

/// A lazy image as `inspect` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageInspection {
    /// The image as named by the user.
    pub image: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerInspection>,
}

/// The manifest of a lazy image; refuses images that are not lazy.
pub async fn fetch_lazy_manifest(
    store: &ImageStore,
    name: &str,
) -> Result<FetchedManifest, ImageError> {
    let fetched = store.fetch_manifest().await?;
    let lazy = fetched
        .manifest
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(FORMAT_ANNOTATION));
    if !lazy {
        return Err(ImageError::NotLazy {
            image: name.to_owned(),
        });
    }
    for desc in fetched.manifest.layers() {
        if desc.media_type().to_string() != LAYER_MEDIA_TYPE {
            return Err(ImageError::UnsupportedLayer {
                image: name.to_owned(),
                digest: desc.digest().to_string(),
                media_type: desc.media_type().to_string(),
            });
        }
    }
    Ok(fetched)
}

/// Reads one layer's metadata with one range read (two when the descriptor
/// lacks the offset annotations). Returns it with the `[metadata][footer]` bytes.
pub async fn read_layer_meta(
    store: &ImageStore,
    desc: &Descriptor,
    name: &str,
) -> Result<(LayerMeta, Vec<u8>), ImageError> {
    let digest = desc.digest().to_string();
    let size = desc.size();
    let annotated = desc.annotations().as_ref().and_then(|a| {
        let offset: u64 = a.get(META_OFFSET_ANNOTATION)?.parse().ok()?;
        let len: u64 = a.get(META_LENGTH_ANNOTATION)?.parse().ok()?;
        (offset.checked_add(len) == Some(size)).then_some(offset)
    });
    let offset = match annotated {
        Some(offset) => offset,
        None => {
            let start = size
                .checked_sub(FOOTER_LEN as u64)
                .ok_or_else(|| format_err(name, &digest, too_small()))?;
            let footer_bytes = store.read_range(&digest, start..size).await?;
            Footer::decode(&footer_bytes)
                .map_err(|e| format_err(name, &digest, e))?
                .meta_offset
        }
    };
    if offset >= size {
        return Err(format_err(
            name,
            &digest,
            lazy_format::FormatError::Layout("metadata offset beyond the blob"),
        ));
    }
    let tail = store.read_range(&digest, offset..size).await?;
    let meta = decode_tail(&tail, size).map_err(|e| format_err(name, &digest, e))?;
    Ok((meta, tail))
}

/// Reads every layer's metadata and counts.
pub async fn inspect_image(store: &ImageStore, name: &str) -> Result<ImageInspection, ImageError> {
    let fetched = fetch_lazy_manifest(store, name).await?;
    let mut layers = Vec::new();
    for desc in fetched.manifest.layers() {
        let (meta, tail) = read_layer_meta(store, desc, name).await?;
        let meta_bytes = tail.len() as u64;
        layers.push(LayerInspection {
            digest: desc.digest().to_string(),
            size: desc.size(),
            meta_bytes,
            stats: meta.stats(),
        });
    }
    Ok(ImageInspection {
        image: name.to_owned(),
        manifest_digest: fetched.digest,
        layers,
    })
}

/// Materializes the root filesystem of a lazy image into `dir`, which must
/// be empty or absent. Each layer blob is downloaded (verified) to a temp
/// file, then applied.
pub async fn unpack_image(
    store: &ImageStore,
    name: &str,
    dir: &Path,
) -> Result<ImageInspection, ImageError> {
    prepare_target(dir)?;
    let fetched = fetch_lazy_manifest(store, name).await?;
    let mut layers = Vec::new();
    for desc in fetched.manifest.layers() {
        let digest = desc.digest().to_string();
        let temp = tempfile::tempfile().map_err(|source| ImageError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut stream = store.open_blob(&digest, desc.size()).await?;
        let mut writer =
            tokio::fs::File::from_std(temp.try_clone().map_err(|source| io_err(dir, source))?);
        tokio::io::copy(&mut stream, &mut writer)
            .await
            .map_err(|source| ImageError::Download {
                digest: digest.clone(),
                source,
            })?;
        let (dir, name, size) = (dir.to_path_buf(), name.to_owned(), desc.size());
        let layer = tokio::task::spawn_blocking(move || -> Result<LayerInspection, ImageError> {
            let (meta, meta_bytes) =
                meta_from_file(&temp, size).map_err(|e| format_err(&name, &digest, e))?;
            unpack_layer(&dir, &meta, &temp, &digest)?;
            Ok(LayerInspection {
                digest,
                size,
                meta_bytes,
                stats: meta.stats(),
            })
        })
        .await
        .expect("unpack thread panicked")?;
        layers.push(layer);
    }
    Ok(ImageInspection {
        image: name.to_owned(),
        manifest_digest: fetched.digest,
        layers,
    })
}

fn meta_from_file(file: &File, size: u64) -> Result<(LayerMeta, u64), lazy_format::FormatError> {
    let footer_at = size.checked_sub(FOOTER_LEN as u64).ok_or_else(too_small)?;
    let mut footer = [0u8; FOOTER_LEN];
    file.read_exact_at(&mut footer, footer_at)
        .map_err(|_| too_small())?;
    let offset = Footer::decode(&footer)?.meta_offset.min(footer_at);
    let len = usize::try_from(size - offset)
        .map_err(|_| lazy_format::FormatError::Layout("metadata too large"))?;
    let mut tail = vec![0u8; len];
    file.read_exact_at(&mut tail, offset)
        .map_err(|_| too_small())?;
    Ok((decode_tail(&tail, size)?, size - offset))
}

fn prepare_target(dir: &Path) -> Result<(), ImageError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ImageError::Target {
                    path: dir.to_owned(),
                    reason: "directory is not empty",
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))
        }
        Err(e) => Err(io_err(dir, e)),
    }
}

fn too_small() -> lazy_format::FormatError {
    lazy_format::FormatError::Truncated {
        what: "blob",
        need: FOOTER_LEN as u64,
        have: 0,
    }
}

fn format_err(image: &str, digest: &str, source: lazy_format::FormatError) -> ImageError {
    ImageError::Format {
        image: image.to_owned(),
        digest: digest.to_owned(),
        source,
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

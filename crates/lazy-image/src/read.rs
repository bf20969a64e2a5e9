//! Reading lazy images: the manifest (refusing images that are not lazy)
//! and each layer's metadata, with one range read per layer.

use lazy_format::{
    FOOTER_LEN, FORMAT_ANNOTATION, Footer, LAYER_MEDIA_TYPE, LayerMeta, LayerStats,
    META_LENGTH_ANNOTATION, META_OFFSET_ANNOTATION, decode_tail,
};
use lazy_oci::FetchedManifest;
use lazy_oci::spec::Descriptor;

use crate::error::LazyImageError;
use crate::store::ImageStore;

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
) -> Result<FetchedManifest, LazyImageError> {
    let fetched = store.fetch_manifest().await?;
    let lazy = fetched
        .manifest
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(FORMAT_ANNOTATION));
    if !lazy {
        return Err(LazyImageError::NotLazy {
            image: name.to_owned(),
        });
    }
    for desc in fetched.manifest.layers() {
        if desc.media_type().to_string() != LAYER_MEDIA_TYPE {
            return Err(LazyImageError::UnsupportedLayer {
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
) -> Result<(LayerMeta, Vec<u8>), LazyImageError> {
    let tail = fetch_layer_tail(store, desc, name).await?;
    let meta = decode_layer_tail(&tail, desc, name)?;
    Ok((meta, tail))
}

/// Decodes and verifies a layer's `[metadata][footer]` bytes (CPU work:
/// callers on an async runtime run it on a blocking thread).
pub fn decode_layer_tail(
    tail: &[u8],
    desc: &Descriptor,
    name: &str,
) -> Result<LayerMeta, LazyImageError> {
    decode_tail(tail, desc.size()).map_err(|e| format_err(name, desc.digest().as_ref(), e))
}

/// Fetches a layer's `[metadata][footer]` bytes, undecoded: one range read
/// (two when the descriptor lacks the offset annotations).
pub async fn fetch_layer_tail(
    store: &ImageStore,
    desc: &Descriptor,
    name: &str,
) -> Result<Vec<u8>, LazyImageError> {
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
    Ok(store.read_range(&digest, offset..size).await?)
}

/// Reads every layer's metadata and counts.
pub async fn inspect_image(
    store: &ImageStore,
    name: &str,
) -> Result<ImageInspection, LazyImageError> {
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

/// A decoding failure of `image`'s layer `digest`.
pub fn format_err(image: &str, digest: &str, source: lazy_format::FormatError) -> LazyImageError {
    LazyImageError::Format {
        image: image.to_owned(),
        digest: digest.to_owned(),
        source,
    }
}

/// The error of a blob too small to hold a footer.
pub fn too_small() -> lazy_format::FormatError {
    lazy_format::FormatError::Truncated {
        what: "blob",
        need: FOOTER_LEN as u64,
        have: 0,
    }
}

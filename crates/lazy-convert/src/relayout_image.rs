//! Relaying out a stored lazy image by its prefetch record: each layer the
//! record reads from is rewritten with the recorded chunks first, in
//! first-read order (see [`crate::relayout_layer`]); the config's diff IDs
//! and the manifest follow, and the manifest replaces the old one under
//! the same tag. The record stays valid for the new image once its layer
//! digests are renamed, which [`RelaidImage::record`] holds.

use std::io::BufWriter;

use lazy_format::{META_LENGTH_ANNOTATION, META_OFFSET_ANNOTATION, PrefetchRecord};
use lazy_image::{ImageStore, fetch_lazy_manifest, format_err};
use lazy_oci::OCI_MANIFEST;
use serde_json::Value;

use crate::image::{CONFIG_SIZE_LIMIT, malformed};
use crate::image_error::{ImageError, io_err};
use crate::unpack_image::{download_blob, meta_from_file};
use crate::{ConvertedLayer, relayout_layer};

/// What [`relayout_image`] did.
#[derive(Debug, Clone)]
pub struct RelaidImage {
    /// Digest of the new manifest (stored under the image's tag).
    pub manifest_digest: String,
    /// Size of the new manifest.
    pub manifest_size: u64,
    /// The record, naming the new layer digests.
    pub record: PrefetchRecord,
    /// Per layer (manifest order): the rewritten layer, or `None` when the
    /// record reads nothing of it and it was kept as it was.
    pub layers: Vec<Option<ConvertedLayer>>,
}

/// Relays out the lazy image at `store` (named `name` in errors) so that
/// `record`'s chunks sit in the order it read them.
pub async fn relayout_image(
    store: &ImageStore,
    name: &str,
    record: &PrefetchRecord,
) -> Result<RelaidImage, ImageError> {
    let fetched = fetch_lazy_manifest(store, name).await?;
    let descs = fetched.manifest.layers();
    let digests: Vec<String> = descs.iter().map(|d| d.digest().to_string()).collect();
    if record.layers != digests {
        return Err(malformed(
            name,
            "the prefetch record names other layers than the image's manifest".into(),
        ));
    }
    let mut manifest: Value = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| malformed(name, format!("manifest is not JSON: {e}")))?;
    let config_digest = fetched.manifest.config().digest().to_string();
    let mut config: Value =
        serde_json::from_slice(&store.fetch_blob(&config_digest, CONFIG_SIZE_LIMIT).await?)
            .map_err(|e| malformed(name, format!("config is not JSON: {e}")))?;

    let mut new_record = record.clone();
    let mut layers = Vec::with_capacity(descs.len());
    for (position, desc) in descs.iter().enumerate() {
        let first: Vec<u32> = record
            .chunks
            .iter()
            .filter(|(p, _)| *p as usize == position)
            .map(|&(_, index)| index)
            .collect();
        if first.is_empty() {
            layers.push(None);
            continue;
        }
        let layer = relayout_one(store, name, desc.digest().as_ref(), desc.size(), first).await?;
        let entry = &mut manifest["layers"][position];
        entry["digest"] = layer.digest.clone().into();
        entry["size"] = layer.size.into();
        entry["annotations"][META_OFFSET_ANNOTATION] = layer.meta_offset.to_string().into();
        entry["annotations"][META_LENGTH_ANNOTATION] = layer.meta_len.to_string().into();
        config["rootfs"]["diff_ids"][position] = layer.digest.clone().into();
        new_record.layers[position] = layer.digest.clone();
        layers.push(Some(layer));
    }

    let config_bytes = serde_json::to_vec(&config).expect("JSON value serializes");
    let config_digest = lazy_oci::sha256_digest(&config_bytes);
    manifest["config"]["digest"] = config_digest.clone().into();
    manifest["config"]["size"] = config_bytes.len().into();
    store.push_blob_bytes(&config_digest, config_bytes).await?;
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("JSON value serializes");
    let manifest_size = manifest_bytes.len() as u64;
    let manifest_digest = store.put_manifest(OCI_MANIFEST, manifest_bytes).await?;
    Ok(RelaidImage {
        manifest_digest,
        manifest_size,
        record: new_record,
        layers,
    })
}

/// Downloads one layer (verified), rewrites it into a temp file and stores it.
async fn relayout_one(
    store: &ImageStore,
    name: &str,
    digest: &str,
    size: u64,
    first: Vec<u32>,
) -> Result<ConvertedLayer, ImageError> {
    let temp_dir = store.temp_dir();
    let blob = download_blob(store, digest, size, &temp_dir).await?;
    let out = tempfile::Builder::new()
        .prefix(".lazyfs-relayout-")
        .tempfile_in(&temp_dir)
        .map_err(|source| io_err(&temp_dir, source))?;
    let writer = out.reopen().map_err(|source| io_err(out.path(), source))?;
    let (name, digest) = (name.to_owned(), digest.to_owned());
    let layer = tokio::task::spawn_blocking(move || -> Result<ConvertedLayer, ImageError> {
        let (meta, _) = meta_from_file(&blob, size).map_err(|e| format_err(&name, &digest, e))?;
        let writer = BufWriter::with_capacity(1 << 20, writer);
        Ok(relayout_layer(&blob, &meta, &first, writer, &digest)?)
    })
    .await
    .expect("relayout thread panicked")?;
    store.push_blob_file(&layer.digest, out.path()).await?;
    Ok(layer)
}

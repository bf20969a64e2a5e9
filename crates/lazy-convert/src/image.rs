//! Converts a whole image: every layer, then config and manifest.

use std::io::{BufWriter, Read};
use std::sync::Arc;

use lazy_format::{
    FORMAT_ANNOTATION, LAYER_MEDIA_TYPE, META_LENGTH_ANNOTATION, META_OFFSET_ANNOTATION,
};
use lazy_oci::{OCI_MANIFEST, spec::Descriptor};
use serde_json::{Value, json};
use tokio_util::io::SyncIoBridge;

use lazy_image::{ImageStore, LazyImageError};

use crate::image_error::{ImageError, io_err};
use crate::{ConvertOptions, ConvertedLayer, convert_layer};

/// Largest image config accepted.
pub const CONFIG_SIZE_LIMIT: u64 = 16 << 20;
/// Manifest annotation naming the source image's manifest digest.
pub const SOURCE_ANNOTATION: &str = "dev.lazyfs.source";

/// Hears about a conversion's progress (for progress bars).
pub trait ConvertProgress: Send + Sync {
    /// The conversion of `layers` layers totalling `bytes` source bytes starts.
    fn image_started(&self, layers: usize, bytes: u64);
    /// Layer `index` of `count` starts; `size` is its compressed size.
    fn layer_started(&self, index: usize, count: usize, size: u64);
    /// `n` more source bytes were read.
    fn bytes_read(&self, n: u64);
    /// Layer `index` is converted and stored.
    fn layer_done(&self, index: usize, layer: &ConvertedLayer);
}

/// Ignores progress.
pub struct NoProgress;

impl ConvertProgress for NoProgress {
    fn image_started(&self, _: usize, _: u64) {}
    fn layer_started(&self, _: usize, _: usize, _: u64) {}
    fn bytes_read(&self, _: u64) {}
    fn layer_done(&self, _: usize, _: &ConvertedLayer) {}
}

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// Digest of the source manifest.
    pub source_digest: String,
    /// Digest of the lazy manifest.
    pub manifest_digest: String,
    /// Source layer sizes (compressed), bottom first.
    pub source_sizes: Vec<u64>,
    /// The lazy layers, bottom first.
    pub layers: Vec<ConvertedLayer>,
}

/// Converts the image at `src` into a lazy image stored at `dst`.
pub async fn convert_image(
    src: &ImageStore,
    dst: &ImageStore,
    name: &str,
    opts: &ConvertOptions,
    progress: Arc<dyn ConvertProgress>,
) -> Result<ConvertReport, ImageError> {
    let source = src.fetch_manifest().await?;
    let annotations = source.manifest.annotations().clone().unwrap_or_default();
    if annotations.contains_key(FORMAT_ANNOTATION) {
        return Err(ImageError::AlreadyLazy {
            image: name.to_owned(),
        });
    }
    let config_desc = source.manifest.config();
    let config_bytes = src
        .fetch_blob(config_desc.digest().as_ref(), CONFIG_SIZE_LIMIT)
        .await?;
    let mut config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| malformed(name, format!("config is not JSON: {e}")))?;
    let layer_descs = source.manifest.layers();
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if diff_ids != layer_descs.len() {
        return Err(malformed(
            name,
            format!(
                "config lists {diff_ids} diff_ids for {} layers",
                layer_descs.len()
            ),
        ));
    }

    let total = layer_descs.iter().map(Descriptor::size).sum();
    progress.image_started(layer_descs.len(), total);
    let mut layers = Vec::with_capacity(layer_descs.len());
    for (index, desc) in layer_descs.iter().enumerate() {
        check_layer_type(name, desc)?;
        progress.layer_started(index, layer_descs.len(), desc.size());
        let layer = convert_one(src, dst, desc, opts, Arc::clone(&progress)).await?;
        progress.layer_done(index, &layer);
        layers.push(layer);
    }

    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).expect("JSON value serializes");
    let config_digest = lazy_oci::sha256_digest(&config_bytes);
    let config_size = config_bytes.len();
    dst.push_blob_bytes(&config_digest, config_bytes).await?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers.iter().zip(layer_descs).map(|(l, src_desc)| json!({
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": l.digest,
            "size": l.size,
            "annotations": {
                META_OFFSET_ANNOTATION: l.meta_offset.to_string(),
                META_LENGTH_ANNOTATION: l.meta_len.to_string(),
                "dev.lazyfs.source.layer": src_desc.digest().to_string(),
            },
        })).collect::<Vec<_>>(),
        "annotations": {
            FORMAT_ANNOTATION: lazy_format::FORMAT_VERSION.to_string(),
            SOURCE_ANNOTATION: source.digest,
        },
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("JSON value serializes");
    let manifest_digest = dst.put_manifest(OCI_MANIFEST, manifest_bytes).await?;
    Ok(ConvertReport {
        source_digest: source.digest,
        manifest_digest,
        source_sizes: layer_descs.iter().map(Descriptor::size).collect(),
        layers,
    })
}

/// Streams one source layer through the converter into a temp file, then
/// stores it at `dst`.
async fn convert_one(
    src: &ImageStore,
    dst: &ImageStore,
    desc: &Descriptor,
    opts: &ConvertOptions,
    progress: Arc<dyn ConvertProgress>,
) -> Result<ConvertedLayer, ImageError> {
    let digest = desc.digest().to_string();
    let stream = src.open_blob(&digest, desc.size()).await?;
    let temp_dir = dst.temp_dir();
    let temp = tempfile::Builder::new()
        .prefix(".lazyfs-convert-")
        .tempfile_in(&temp_dir)
        .map_err(|source| io_err(&temp_dir, source))?;
    let out = temp
        .reopen()
        .map_err(|source| io_err(temp.path(), source))?;
    let opts = opts.clone();
    let layer_name = digest.clone();
    let converted = tokio::task::spawn_blocking(move || {
        let input = Counting {
            inner: SyncIoBridge::new(stream),
            progress,
        };
        convert_layer(
            input,
            BufWriter::with_capacity(1 << 20, out),
            &opts,
            &layer_name,
        )
    })
    .await
    .expect("conversion thread panicked")?;
    dst.push_blob_file(&converted.digest, temp.path()).await?;
    Ok(converted)
}

fn check_layer_type(image: &str, desc: &Descriptor) -> Result<(), ImageError> {
    let media_type = desc.media_type().to_string();
    let readable = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    ];
    if readable.contains(&media_type.as_str()) && desc.urls().as_ref().is_none_or(Vec::is_empty) {
        Ok(())
    } else {
        Err(LazyImageError::UnsupportedLayer {
            image: image.to_owned(),
            digest: desc.digest().to_string(),
            media_type,
        }
        .into())
    }
}

pub(crate) fn malformed(image: &str, reason: String) -> ImageError {
    LazyImageError::Malformed {
        image: image.to_owned(),
        reason,
    }
    .into()
}

/// Reports bytes read to the progress listener.
struct Counting<R> {
    inner: R,
    progress: Arc<dyn ConvertProgress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes_read(n as u64);
        Ok(n)
    }
}

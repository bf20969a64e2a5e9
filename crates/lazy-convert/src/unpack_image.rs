//! Materializing a lazy image: every layer downloaded (verified) and
//! applied into a directory, the way an OCI unpacker applies tar layers.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use lazy_format::{FOOTER_LEN, Footer, LayerMeta, decode_tail};
use lazy_image::{
    ImageInspection, ImageStore, LayerInspection, fetch_lazy_manifest, format_err, too_small,
};

use crate::image_error::{ImageError, io_err};
use crate::unpack_layer;

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
        let temp = download_blob(store, &digest, desc.size(), &std::env::temp_dir()).await?;
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

/// Downloads blob `digest` (verified against its digest) into an unnamed
/// temp file in `temp_dir`.
pub(crate) async fn download_blob(
    store: &ImageStore,
    digest: &str,
    size: u64,
    temp_dir: &Path,
) -> Result<File, ImageError> {
    let temp = tempfile::tempfile_in(temp_dir).map_err(|source| io_err(temp_dir, source))?;
    let mut stream = store.open_blob(digest, size).await?;
    let mut writer = tokio::fs::File::from_std(
        temp.try_clone()
            .map_err(|source| io_err(temp_dir, source))?,
    );
    tokio::io::copy(&mut stream, &mut writer)
        .await
        .map_err(|source| ImageError::Download {
            digest: digest.to_owned(),
            source,
        })?;
    Ok(temp)
}

/// The metadata of the layer blob in `file` (`size` bytes), and its length.
pub(crate) fn meta_from_file(
    file: &File,
    size: u64,
) -> Result<(LayerMeta, u64), lazy_format::FormatError> {
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

//! Prefetch records in a registry or layout: an OCI artifact manifest whose
//! `subject` is the lazy image's manifest, tagged after that manifest's
//! digest (the OCI referrers tag scheme), so any registry can hold it and
//! registry garbage collection keeps it.

use lazy_format::{MAX_PREFETCH_RECORD, PREFETCH_MEDIA_TYPE, PrefetchRecord};
use lazy_oci::{OCI_MANIFEST, OciError};
use serde_json::json;

use crate::error::LazyImageError;
use crate::store::ImageStore;

/// The tag of the prefetch record of the image with manifest `digest`.
pub fn prefetch_tag(manifest_digest: &str) -> String {
    format!("{}.lazyfs-prefetch", manifest_digest.replace(':', "-"))
}

/// The OCI empty descriptor's content.
const EMPTY_CONFIG: &[u8] = b"{}";

/// Stores `record` for the image whose manifest is `subject` (digest, size).
/// `store` must point at the image's repository with the prefetch tag.
pub async fn push_prefetch_record(
    store: &ImageStore,
    subject: (&str, u64),
    record: &PrefetchRecord,
) -> Result<String, LazyImageError> {
    let blob = record.encode();
    let blob_digest = lazy_oci::sha256_digest(&blob);
    let blob_size = blob.len();
    let empty_digest = lazy_oci::sha256_digest(EMPTY_CONFIG);
    store
        .push_blob_bytes(&empty_digest, EMPTY_CONFIG.to_vec())
        .await?;
    store.push_blob_bytes(&blob_digest, blob).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": PREFETCH_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": EMPTY_CONFIG.len()},
        "layers": [{"mediaType": PREFETCH_MEDIA_TYPE, "digest": blob_digest, "size": blob_size}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON value serializes");
    Ok(store.put_manifest(OCI_MANIFEST, bytes).await?)
}

/// The prefetch record stored for an image, if any. `store` points at the
/// image's repository with the prefetch tag; a missing tag is `Ok(None)`.
pub async fn fetch_prefetch_record(
    store: &ImageStore,
    name: &str,
) -> Result<Option<PrefetchRecord>, LazyImageError> {
    let manifest = match store.fetch_manifest().await {
        Ok(m) => m,
        Err(OciError::ManifestNotFound { .. } | OciError::LayoutTagNotFound { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(desc) = manifest
        .manifest
        .layers()
        .iter()
        .find(|d| d.media_type().to_string() == PREFETCH_MEDIA_TYPE)
    else {
        return Ok(None);
    };
    let bytes = store
        .fetch_blob(desc.digest().as_ref(), MAX_PREFETCH_RECORD as u64)
        .await?;
    let record = PrefetchRecord::decode(&bytes).map_err(|source| LazyImageError::Format {
        image: name.to_owned(),
        digest: desc.digest().to_string(),
        source,
    })?;
    Ok(Some(record))
}

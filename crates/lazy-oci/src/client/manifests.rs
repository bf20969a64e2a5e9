//! Fetching (with index resolution and digest checks) and pushing manifests.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::transport::{Body, Call, read_limited, unexpected_status};
use super::{RegistryClient, Target};
use crate::digest::{sha256_digest, validate_digest};
use crate::manifest::{
    DocumentKind, FetchedManifest, MANIFEST_ACCEPT, MANIFEST_SIZE_LIMIT, MAX_INDEX_DEPTH, classify,
    parse_manifest, select_linux_amd64,
};
use crate::{OciError, Reference};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Raw manifest bytes as the registry sent them.
struct RawManifest {
    bytes: Vec<u8>,
    content_type: Option<String>,
    announced_digest: Option<String>,
}

impl RegistryClient {
    /// Fetches the image manifest of `reference`, resolving an image index or
    /// manifest list to its linux/amd64 manifest.
    ///
    /// Bytes are checked against the reference's digest (when pulling by
    /// digest), the index entry's digest and size, and the registry's
    /// `Docker-Content-Digest` header. Manifests over 4 MiB are refused.
    pub async fn fetch_manifest(&self, reference: &Reference) -> Result<FetchedManifest, OciError> {
        let mut current = reference.clone();
        let mut expected_size = None;
        for _ in 0..MAX_INDEX_DEPTH {
            let what = current.to_string();
            let raw = self.get_manifest(&current).await?;
            let digest = sha256_digest(&raw.bytes);
            for expected in [current.digest.as_deref(), raw.announced_digest.as_deref()]
                .into_iter()
                .flatten()
            {
                if expected != digest {
                    return Err(OciError::DigestMismatch {
                        what,
                        expected: expected.to_owned(),
                        actual: digest,
                    });
                }
            }
            let actual_size = u64::try_from(raw.bytes.len()).unwrap_or(u64::MAX);
            if let Some(expected) = expected_size.filter(|&s| s != actual_size) {
                return Err(OciError::SizeMismatch {
                    what,
                    expected,
                    actual: actual_size,
                });
            }
            let (kind, media_type) = classify(raw.content_type.as_deref(), &raw.bytes, &what)?;
            match kind {
                DocumentKind::Manifest => {
                    let manifest = parse_manifest(&raw.bytes, &what)?;
                    return Ok(FetchedManifest {
                        manifest,
                        digest,
                        media_type,
                        bytes: raw.bytes,
                    });
                }
                DocumentKind::Index => {
                    let entry = select_linux_amd64(&raw.bytes, &what)?;
                    let child = entry.digest().to_string();
                    validate_digest(&child)?;
                    tracing::debug!(index = %what, manifest = %child, "selected linux/amd64");
                    expected_size = Some(entry.size());
                    current = reference.with_digest(&child);
                }
            }
        }
        Err(OciError::InvalidResponse {
            url: reference.to_string(),
            reason: "image indexes nested too deeply",
        })
    }

    async fn get_manifest(&self, reference: &Reference) -> Result<RawManifest, OciError> {
        self.read_via_mirrors(reference, |source| async move {
            self.get_manifest_from(&source).await
        })
        .await
    }

    async fn get_manifest_from(&self, reference: &Reference) -> Result<RawManifest, OciError> {
        let url = self.repo_url(reference, "manifests", &reference.tag_or_digest())?;
        let call =
            Call::new(Method::GET, url, Target::of(reference)).header(ACCEPT, MANIFEST_ACCEPT);
        let response = self.send(call).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(OciError::ManifestNotFound {
                    reference: reference.to_string(),
                });
            }
            _ => return Err(unexpected_status(Method::GET, response).await),
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE.as_str());
        let announced_digest =
            header(DOCKER_CONTENT_DIGEST).filter(|d| d.starts_with(crate::digest::SHA256_PREFIX));
        let what = format!("manifest {reference}");
        let bytes = read_limited(response, MANIFEST_SIZE_LIMIT, &what).await?;
        Ok(RawManifest {
            bytes,
            content_type,
            announced_digest,
        })
    }

    /// Uploads a manifest under the reference's tag (or digest) and returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, OciError> {
        let digest = sha256_digest(&bytes);
        if let Some(expected) = reference.digest.as_deref().filter(|d| *d != digest) {
            return Err(OciError::DigestMismatch {
                what: format!("manifest for {reference}"),
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let url = self.repo_url(reference, "manifests", &reference.tag_or_digest())?;
        let call = Call::new(Method::PUT, url, Target::of(reference))
            .header(CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes.into()))
            .push_access()
            .retry(true);
        let response = self.send(call).await?;
        if !response.status().is_success() {
            return Err(unexpected_status(Method::PUT, response).await);
        }
        let announced = response
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok());
        if let Some(announced) = announced.filter(|a| *a != digest) {
            return Err(OciError::DigestMismatch {
                what: format!("manifest pushed to {reference}"),
                expected: digest,
                actual: announced.to_owned(),
            });
        }
        tracing::debug!(%reference, %digest, "manifest pushed");
        Ok(digest)
    }
}

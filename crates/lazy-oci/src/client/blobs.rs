//! Reading blobs: whole (small, verified), streamed (verified at the end),
//! by byte range, and existence checks.

use std::ops::Range;

use futures_util::TryStreamExt as _;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};

use super::transport::{Call, read_limited, unexpected_status};
use super::{RegistryClient, Target};
use crate::digest::{validate_digest, verify_bytes};
use crate::{BlobStream, OciError, Reference};

impl RegistryClient {
    /// Fetches a whole blob of at most `max_size` bytes (e.g. an image config)
    /// and verifies its digest.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, OciError> {
        let response = self.get_blob(reference, digest, None, false).await?;
        let what = format!("blob {digest} from {}", reference.name());
        let bytes = read_limited(response, max_size, &what).await?;
        verify_bytes(&what, digest, &bytes)?;
        Ok(bytes)
    }

    /// Opens a blob of `size` bytes as a stream that verifies size and digest
    /// at its end (see [`BlobStream`]).
    pub async fn open_blob(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<BlobStream, OciError> {
        let response = self.get_blob(reference, digest, None, true).await?;
        if let Some(announced) = header_u64(&response, CONTENT_LENGTH.as_str())
            && announced != size
        {
            return Err(OciError::SizeMismatch {
                what: format!("blob {digest} from {}", reference.name()),
                expected: size,
                actual: announced,
            });
        }
        let body = response.bytes_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(body);
        Ok(BlobStream::new(reader, digest, size))
    }

    /// Reads `range` of a blob with an HTTP range request. The registry must
    /// answer 206 with exactly `range.end - range.start` bytes; a registry
    /// that sends the whole blob instead is an error, not a silent download.
    /// The bytes are not verified (the caller checks its own chunk digests).
    pub async fn read_range(
        &self,
        reference: &Reference,
        digest: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, OciError> {
        validate_digest(digest)?;
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = range.end - range.start;
        let response = self
            .get_blob(reference, digest, Some(&range), false)
            .await?;
        let url = response.url().to_string();
        let status = response.status();
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(OciError::RangeNotSupported {
                url,
                status: status.as_u16(),
            });
        }
        if let Some(content_range) = response.headers().get(CONTENT_RANGE) {
            let expected_prefix = format!("bytes {}-{}/", range.start, range.end - 1);
            let matches = content_range
                .to_str()
                .is_ok_and(|v| v.starts_with(&expected_prefix));
            if !matches {
                return Err(OciError::InvalidResponse {
                    url,
                    reason: "Content-Range does not match the requested range",
                });
            }
        }
        let what = format!("range {}..{} of blob {digest}", range.start, range.end);
        let bytes = read_limited(response, wanted, &what).await?;
        let got = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if got != wanted {
            return Err(OciError::SizeMismatch {
                what,
                expected: wanted,
                actual: got,
            });
        }
        Ok(bytes)
    }

    /// The size of a blob if the repository has it (`HEAD`), `None` if not.
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Option<u64>, OciError> {
        validate_digest(digest)?;
        let url = self.repo_url(reference, "blobs", digest)?;
        let response = self
            .send(Call::new(Method::HEAD, url, Target::of(reference)))
            .await?;
        match response.status() {
            StatusCode::OK => header_u64(&response, CONTENT_LENGTH.as_str())
                .map(Some)
                .ok_or_else(|| OciError::InvalidResponse {
                    url: response.url().to_string(),
                    reason: "blob HEAD response without Content-Length",
                }),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(unexpected_status(Method::HEAD, response).await),
        }
    }

    /// `GET` a blob (optionally a range) from a mirror or the registry.
    async fn get_blob(
        &self,
        reference: &Reference,
        digest: &str,
        range: Option<&Range<u64>>,
        streaming: bool,
    ) -> Result<Response, OciError> {
        validate_digest(digest)?;
        self.read_via_mirrors(reference, |source| async move {
            self.get_blob_from(&source, digest, range, streaming).await
        })
        .await
    }

    /// `GET` a blob from one registry; maps 404 to [`OciError::BlobNotFound`].
    async fn get_blob_from(
        &self,
        reference: &Reference,
        digest: &str,
        range: Option<&Range<u64>>,
        streaming: bool,
    ) -> Result<Response, OciError> {
        let url = self.repo_url(reference, "blobs", digest)?;
        let mut call = Call::new(Method::GET, url, Target::of(reference));
        if let Some(range) = range {
            call = call.header(RANGE, &format!("bytes={}-{}", range.start, range.end - 1));
        }
        if streaming {
            call = call.streaming();
        }
        let response = self.send(call).await?;
        match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(response),
            StatusCode::NOT_FOUND => Err(OciError::BlobNotFound {
                repository: reference.name(),
                digest: digest.to_owned(),
            }),
            _ => Err(unexpected_status(Method::GET, response).await),
        }
    }
}

/// A header parsed as a number (not `Response::content_length`, which is 0 for HEAD).
fn header_u64(response: &Response, name: &str) -> Option<u64> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

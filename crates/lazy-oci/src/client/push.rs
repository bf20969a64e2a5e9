//! Pushing blobs: skip what the registry has, upload small blobs in one
//! `POST` + `PUT`, big files in 16 MiB `PATCH` chunks streamed from disk.
//!
//! Upload steps are not individually retried (a half-applied `PATCH` cannot
//! be told apart from a lost one); after a transient failure the whole upload
//! starts again from a new session, unless the blob has arrived meanwhile.

use std::path::Path;

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::transport::{Body, Call, backoff_delay, unexpected_status};
use super::{RegistryClient, Target};
use crate::digest::{validate_digest, verify_bytes};
use crate::{OciError, Reference};

/// Files up to this size are uploaded with a single `PUT`.
pub const MONOLITHIC_UPLOAD_LIMIT: u64 = 32 * 1024 * 1024;
/// Chunk size of chunked uploads.
pub const UPLOAD_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
const OCTET_STREAM: &str = "application/octet-stream";

/// What a blob push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The blob was uploaded.
    Uploaded,
    /// The repository already had the blob; nothing was sent.
    AlreadyPresent,
}

impl RegistryClient {
    /// Pushes an in-memory blob (checked against `digest` first), unless present.
    pub async fn push_blob_bytes(
        &self,
        reference: &Reference,
        digest: &str,
        data: Vec<u8>,
    ) -> Result<PushOutcome, OciError> {
        validate_digest(digest)?;
        verify_bytes(
            &format!("data to push to {}", reference.name()),
            digest,
            &data,
        )?;
        if self.blob_exists(reference, digest).await?.is_some() {
            return Ok(PushOutcome::AlreadyPresent);
        }
        let body = Body::Bytes(Bytes::from(data));
        self.with_upload_retries(reference, digest, || {
            self.upload_monolithic(reference, digest, body.clone())
        })
        .await
    }

    /// Pushes the file at `path` as blob `digest`, unless present. The file is
    /// streamed from disk; the registry verifies the digest when the upload
    /// completes.
    pub async fn push_blob_file(
        &self,
        reference: &Reference,
        digest: &str,
        path: &Path,
    ) -> Result<PushOutcome, OciError> {
        validate_digest(digest)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| OciError::io(path, e))?
            .len();
        if self.blob_exists(reference, digest).await?.is_some() {
            return Ok(PushOutcome::AlreadyPresent);
        }
        self.with_upload_retries(reference, digest, || async move {
            if size <= MONOLITHIC_UPLOAD_LIMIT {
                let body = Body::File {
                    path: path.to_owned(),
                    offset: 0,
                    len: size,
                };
                self.upload_monolithic(reference, digest, body).await
            } else {
                self.upload_chunked(reference, digest, path, size).await
            }
        })
        .await
    }

    async fn with_upload_retries<F, Fut>(
        &self,
        reference: &Reference,
        digest: &str,
        upload: F,
    ) -> Result<PushOutcome, OciError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), OciError>>,
    {
        let max_attempts = self.inner.opts.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match upload().await {
                Ok(()) => {
                    tracing::debug!(reference = %reference.name(), digest, "blob uploaded");
                    return Ok(PushOutcome::Uploaded);
                }
                Err(error) if attempt < max_attempts && is_transient_upload_error(&error) => {
                    tracing::debug!(digest, %error, attempt, "upload failed, starting again");
                    tokio::time::sleep(backoff_delay(attempt)).await;
                    if self.blob_exists(reference, digest).await?.is_some() {
                        return Ok(PushOutcome::Uploaded);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn upload_monolithic(
        &self,
        reference: &Reference,
        digest: &str,
        body: Body,
    ) -> Result<(), OciError> {
        let location = self.start_upload(reference).await?;
        self.finish_upload(reference, digest, location, body).await
    }

    async fn upload_chunked(
        &self,
        reference: &Reference,
        digest: &str,
        path: &Path,
        size: u64,
    ) -> Result<(), OciError> {
        let mut location = self.start_upload(reference).await?;
        let mut offset = 0;
        while offset < size {
            let len = UPLOAD_CHUNK_SIZE.min(size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let call = Call::new(Method::PATCH, location, Target::of(reference))
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_RANGE, &range)
                .body(Body::File {
                    path: path.to_owned(),
                    offset,
                    len,
                })
                .push_access();
            let response = self.send(call).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(unexpected_status(Method::PATCH, response).await);
            }
            location = next_location(&response)?;
            offset += len;
        }
        let empty = Body::Bytes(Bytes::new());
        self.finish_upload(reference, digest, location, empty).await
    }

    /// `POST /v2/<repo>/blobs/uploads/`; returns the upload session URL.
    async fn start_upload(&self, reference: &Reference) -> Result<Url, OciError> {
        let url = self.repo_url(reference, "blobs", "uploads/")?;
        let call = Call::new(Method::POST, url, Target::of(reference))
            .body(Body::Bytes(Bytes::new()))
            .push_access();
        let response = self.send(call).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(unexpected_status(Method::POST, response).await);
        }
        next_location(&response)
    }

    /// `PUT <location>?digest=<digest>` with the last (or only) data.
    async fn finish_upload(
        &self,
        reference: &Reference,
        digest: &str,
        mut location: Url,
        body: Body,
    ) -> Result<(), OciError> {
        location.query_pairs_mut().append_pair("digest", digest);
        let call = Call::new(Method::PUT, location, Target::of(reference))
            .header(CONTENT_TYPE, OCTET_STREAM)
            .body(body)
            .push_access();
        let response = self.send(call).await?;
        if response.status() != StatusCode::CREATED {
            return Err(unexpected_status(Method::PUT, response).await);
        }
        Ok(())
    }
}

/// The `Location` of an upload step, resolved against the request URL.
fn next_location(response: &Response) -> Result<Url, OciError> {
    let invalid = |reason| OciError::InvalidResponse {
        url: response.url().to_string(),
        reason,
    };
    let location = response
        .headers()
        .get(LOCATION)
        .ok_or_else(|| invalid("upload response without Location header"))?
        .to_str()
        .map_err(|_| invalid("Location header is not text"))?;
    response
        .url()
        .join(location)
        .map_err(|_| invalid("Location header is not a valid URL"))
}

fn is_transient_upload_error(error: &OciError) -> bool {
    match error {
        OciError::Unreachable { .. } | OciError::Transfer { .. } => true,
        OciError::UnexpectedStatus { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

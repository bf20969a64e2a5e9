//! Sending one logical request: build it (again) for every attempt, attach
//! credentials, answer an authentication challenge once, and retry
//! transient failures of idempotent requests with exponential backoff.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{RegistryClient, Target};
use crate::OciError;

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
const ERROR_BODY_LIMIT: usize = 200;

/// A request body that can be produced again for every attempt.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of `path` starting at `offset`, streamed from disk.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// One logical request.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) target: Target<'a>,
    /// Needs push access (token scope `pull,push`).
    pub(crate) push: bool,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    /// Safe to send again after a transient failure.
    pub(crate) retry: bool,
    /// The body is streamed by the caller: no overall timeout, only the stall timeout.
    pub(crate) streaming: bool,
}

impl<'a> Call<'a> {
    /// A request without body; GET and HEAD are retried.
    pub(crate) fn new(method: Method, url: Url, target: Target<'a>) -> Self {
        let retry = method == Method::GET || method == Method::HEAD;
        Self {
            method,
            url,
            target,
            push: false,
            headers: HeaderMap::new(),
            body: Body::Empty,
            retry,
            streaming: false,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub(crate) fn push_access(mut self) -> Self {
        self.push = true;
        self
    }

    pub(crate) fn retry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }
}

impl RegistryClient {
    /// Sends `call`, returning the first response that is neither an
    /// authentication challenge nor a retried failure. 401/403 after
    /// authenticating become [`OciError::Unauthorized`].
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Response, OciError> {
        let max_attempts = if call.retry {
            self.inner.opts.retries.saturating_add(1)
        } else {
            1
        };
        let mut attempt: u32 = 0;
        let mut answered_challenge = false;
        loop {
            attempt += 1;
            // Credentials go to the registry only, never to a host an upload
            // Location or redirect points elsewhere.
            let authorization = if is_registry_url(&call.url, call.target.api_host) {
                self.authorization(&call.target, call.push).await?
            } else {
                None
            };
            tracing::debug!(method = %call.method, url = %call.url, attempt, "registry request");
            let response = match self.send_routed(&call, authorization).await? {
                Ok(response) => response,
                Err(error) if attempt < max_attempts && is_transient(&error) => {
                    tracing::debug!(url = %call.url, %error, attempt, "transient error, retrying");
                    tokio::time::sleep(backoff_delay(attempt)).await;
                    continue;
                }
                Err(source) if source.is_connect() || source.is_timeout() => {
                    return Err(OciError::Unreachable {
                        registry: call.target.registry.to_owned(),
                        url: call.url.to_string(),
                        attempts: attempt,
                        source,
                    });
                }
                Err(source) => {
                    return Err(OciError::Transfer {
                        url: call.url.to_string(),
                        source,
                    });
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && !answered_challenge
                && is_registry_url(response.url(), call.target.api_host)
            {
                answered_challenge = true;
                if self.learn_challenge(&call.target, call.push, &response)? {
                    attempt -= 1;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.unauthorized(&call.target, status));
            }
            if is_transient_status(status) && attempt < max_attempts {
                tracing::debug!(url = %call.url, %status, attempt, "transient status, retrying");
                tokio::time::sleep(backoff_delay(attempt)).await;
                continue;
            }
            return Ok(response);
        }
    }

    /// Sends one attempt of `call` through the first proxy route that
    /// works. A request that is not safe to repeat moves on to the next
    /// route only when it could not connect.
    async fn send_routed(
        &self,
        call: &Call<'_>,
        authorization: Option<HeaderValue>,
    ) -> Result<Result<Response, reqwest::Error>, OciError> {
        let build = |client: &reqwest::Client| {
            attach_body(self.build(client, call, authorization.clone()), &call.body)
        };
        let fails_over = |outcome: &Result<Response, reqwest::Error>| match outcome {
            Err(e) if e.is_connect() => true,
            _ => call.retry && crate::routes::is_route_failure(outcome),
        };
        self.inner.routes.send_with(build, fails_over).await
    }

    fn build(
        &self,
        http: &reqwest::Client,
        call: &Call<'_>,
        authorization: Option<HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut builder = http
            .request(call.method.clone(), call.url.clone())
            .headers(call.headers.clone());
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        if !call.streaming {
            builder = builder.timeout(self.inner.opts.timeout);
        }
        builder
    }

    pub(super) fn unauthorized(&self, target: &Target<'_>, status: StatusCode) -> OciError {
        OciError::Unauthorized {
            registry: target.registry.to_owned(),
            repository: target.repository.map(str::to_owned),
            status: status.as_u16(),
            credentials: self.inner.config.state(target.registry),
        }
    }
}

async fn attach_body(
    builder: reqwest::RequestBuilder,
    body: &Body,
) -> Result<reqwest::RequestBuilder, OciError> {
    Ok(match body {
        Body::Empty => builder,
        Body::Bytes(bytes) => builder.body(bytes.clone()),
        Body::File { path, offset, len } => {
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| OciError::io(path, e))?;
            file.seek(std::io::SeekFrom::Start(*offset))
                .await
                .map_err(|e| OciError::io(path, e))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file.take(*len), 256 * 1024);
            builder
                .header(CONTENT_LENGTH, *len)
                .body(reqwest::Body::wrap_stream(stream))
        }
    })
}

/// Whether `url` points at `api_host` (same host and port).
fn is_registry_url(url: &Url, api_host: &str) -> bool {
    let Ok(registry) = Url::parse(&format!("{}://{api_host}/", url.scheme())) else {
        return false;
    };
    url.host_str().is_some()
        && registry.host_str() == url.host_str()
        && registry.port_or_known_default() == url.port_or_known_default()
}

/// Transport errors worth another attempt.
pub(super) fn is_transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request()
}

/// Statuses worth another attempt: 5xx and 429.
pub(super) fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// 200 ms, 400 ms, 800 ms, … capped at 5 s, plus up to 20 % jitter.
pub(super) fn backoff_delay(attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let delay = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP);
    let jitter_range = u64::try_from(delay.as_millis() / 5).unwrap_or(0).max(1);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    delay + Duration::from_millis(random % jitter_range)
}

/// Turns a response of an unexpected status into [`OciError::UnexpectedStatus`]
/// with the beginning of its body (the registry's error message).
pub async fn unexpected_status(method: Method, mut response: Response) -> OciError {
    let url = response.url().to_string();
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    OciError::UnexpectedStatus {
        method: method.to_string(),
        url,
        status,
        body: String::from_utf8_lossy(&body).trim().to_owned(),
    }
}

/// Reads a whole response body, failing once it exceeds `limit` bytes.
pub async fn read_limited(
    mut response: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, OciError> {
    let too_large = || OciError::TooLarge {
        what: what.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let url = response.url().to_string();
    let capacity = response.content_length().unwrap_or(0).min(limit);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| OciError::Transfer {
            url: url.clone(),
            source,
        })?
    {
        let new_len = u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX);
        if new_len > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_only_for_the_registry_host() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(is_registry_url(&url("https://reg.io/v2/"), "reg.io"));
        assert!(is_registry_url(&url("https://reg.io/v2/"), "reg.io:443"));
        assert!(is_registry_url(
            &url("http://127.0.0.1:5000/x"),
            "127.0.0.1:5000"
        ));
        assert!(is_registry_url(&url("http://[::1]:5000/x"), "[::1]:5000"));
        assert!(!is_registry_url(
            &url("http://127.0.0.1:5001/x"),
            "127.0.0.1:5000"
        ));
        assert!(!is_registry_url(
            &url("https://s3.amazonaws.com/b"),
            "reg.io"
        ));
        assert!(!is_registry_url(&url("https://reg.io.evil.com/"), "reg.io"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let d1 = backoff_delay(1);
        assert!(
            d1 >= Duration::from_millis(200) && d1 < Duration::from_millis(240),
            "{d1:?}"
        );
        let d3 = backoff_delay(3);
        assert!(
            d3 >= Duration::from_millis(800) && d3 < Duration::from_millis(960),
            "{d3:?}"
        );
        for attempt in [6, 10, 40, u32::MAX] {
            let d = backoff_delay(attempt);
            assert!(
                d >= BACKOFF_CAP && d < BACKOFF_CAP + Duration::from_secs(1),
                "{d:?}"
            );
        }
    }
}

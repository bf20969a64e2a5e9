//! Registry authentication: remembers each registry's challenge, answers
//! Basic challenges with docker-config credentials and Bearer challenges
//! with tokens from the realm, cached per (registry, scope) until they expire.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;

use super::transport::{
    backoff_delay, is_transient, is_transient_status, read_limited, unexpected_status,
};
use super::{RegistryClient, Target};
use crate::OciError;
use crate::challenge::{Challenge, parse_challenge};

const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
const TOKEN_RESPONSE_LIMIT: u64 = 1024 * 1024;

/// What the client learned about registries' authentication.
#[derive(Debug, Default)]
pub(super) struct AuthCache {
    challenges: HashMap<String, Challenge>,
    tokens: HashMap<(String, Option<String>), Token>,
}

struct Token {
    value: String,
    expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `repository:<repo>:pull` or `…:pull,push`; `None` for requests about no repository.
fn scope(target: &Target<'_>, push: bool) -> Option<String> {
    let actions = if push { "pull,push" } else { "pull" };
    target
        .repository
        .map(|repo| format!("repository:{repo}:{actions}"))
}

impl RegistryClient {
    /// The `Authorization` header for a request, from what the registry asked for before.
    pub(super) async fn authorization(
        &self,
        target: &Target<'_>,
        push: bool,
    ) -> Result<Option<HeaderValue>, OciError> {
        let challenge = self.lock_auth().challenges.get(target.api_host).cloned();
        let value = match challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => match self.inner.config.credentials_for(target.registry) {
                Some(creds) => creds.basic_authorization(),
                None => return Ok(None),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let scope = scope(target, push);
                let key = (target.api_host.to_owned(), scope.clone());
                let cached = self
                    .lock_auth()
                    .tokens
                    .get(&key)
                    .filter(|t| t.expires > Instant::now())
                    .map(|t| t.value.clone());
                let token = match cached {
                    Some(token) => token,
                    None => {
                        let token = self
                            .fetch_token(target, &realm, service.as_deref(), scope.as_deref())
                            .await?;
                        let value = token.value.clone();
                        self.lock_auth().tokens.insert(key, token);
                        value
                    }
                };
                format!("Bearer {token}")
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| OciError::InvalidResponse {
            url: target.api_host.to_owned(),
            reason: "token is not a valid header value",
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Records the challenge of a 401 response. Returns whether sending the
    /// request again can succeed (there is something new to answer with).
    pub(super) fn learn_challenge(
        &self,
        target: &Target<'_>,
        push: bool,
        response: &Response,
    ) -> Result<bool, OciError> {
        let Some(header) = response.headers().get(WWW_AUTHENTICATE) else {
            return Ok(false);
        };
        let text = String::from_utf8_lossy(header.as_bytes()).into_owned();
        let Some(challenge) = parse_challenge(&text) else {
            return Err(OciError::UnsupportedChallenge {
                registry: target.registry.to_owned(),
                challenge: text,
            });
        };
        tracing::debug!(
            registry = target.registry,
            ?challenge,
            "authentication challenge"
        );
        let has_credentials = self.inner.config.credentials_for(target.registry).is_some();
        let mut cache = self.lock_auth();
        let retry = match &challenge {
            Challenge::Basic => has_credentials,
            Challenge::Bearer { .. } => {
                cache
                    .tokens
                    .remove(&(target.api_host.to_owned(), scope(target, push)));
                true
            }
        };
        cache
            .challenges
            .insert(target.api_host.to_owned(), challenge);
        Ok(retry)
    }

    async fn fetch_token(
        &self,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Token, OciError> {
        let mut url = Url::parse(realm).map_err(|_| OciError::InvalidResponse {
            url: target.api_host.to_owned(),
            reason: "authentication realm is not a valid URL",
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if let Some(scope) = scope {
                query.append_pair("scope", scope);
            }
        }
        let mut attempt_headers = reqwest::header::HeaderMap::new();
        if let Some(creds) = self.inner.config.credentials_for(target.registry)
            && let Ok(mut value) = HeaderValue::from_str(&creds.basic_authorization())
        {
            value.set_sensitive(true);
            attempt_headers.insert(AUTHORIZATION, value);
        }
        tracing::debug!(realm = %url, "fetching registry token");
        let max_attempts = self.inner.opts.retries.saturating_add(1);
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let sent = self
                .inner
                .routes
                .send(|http| {
                    http.request(Method::GET, url.clone())
                        .headers(attempt_headers.clone())
                        .timeout(self.inner.opts.timeout)
                })
                .await;
            match sent {
                Ok(r) if is_transient_status(r.status()) && attempt < max_attempts => {}
                Ok(r) => break r,
                Err(e) if is_transient(&e) && attempt < max_attempts => {}
                Err(source) => {
                    return Err(OciError::Unreachable {
                        registry: url.host_str().unwrap_or_default().to_owned(),
                        url: url.to_string(),
                        attempts: attempt,
                        source,
                    });
                }
            }
            tokio::time::sleep(backoff_delay(attempt)).await;
        };
        match response.status() {
            StatusCode::OK => {}
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(self.unauthorized(target, status));
            }
            _ => return Err(unexpected_status(Method::GET, response).await),
        }
        let what = format!("token response from {url}");
        let body = read_limited(response, TOKEN_RESPONSE_LIMIT, &what).await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|source| OciError::InvalidDocument {
                kind: "token response",
                what: url.to_string(),
                source,
            })?;
        let value = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OciError::InvalidResponse {
                url: url.to_string(),
                reason: "token response has neither `token` nor `access_token`",
            })?;
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
            .saturating_sub(TOKEN_EXPIRY_MARGIN);
        Ok(Token {
            value,
            expires: Instant::now() + lifetime,
        })
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, AuthCache> {
        self.inner
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let target = Target {
            registry: "r",
            api_host: "r",
            repository: Some("a/b"),
        };
        assert_eq!(
            scope(&target, false).as_deref(),
            Some("repository:a/b:pull")
        );
        assert_eq!(
            scope(&target, true).as_deref(),
            Some("repository:a/b:pull,push")
        );
        let none = Target {
            repository: None,
            ..target
        };
        assert_eq!(scope(&none, true), None);
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token {
            value: "s3cr3t".into(),
            expires: Instant::now(),
        };
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}

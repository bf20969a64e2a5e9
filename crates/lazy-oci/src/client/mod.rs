//! The registry client: one cheap-to-clone handle holding the HTTP
//! connection pool, the docker credentials and the token cache.
//!
//! Submodules split it by concern: `transport` (retries and authentication
//! of every request), `auth` (challenges and bearer tokens), `manifests`,
//! `blobs` (reads) and `push` (uploads).

mod auth;
mod blobs;
mod manifests;
mod mirrors;
mod push;
mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};

use crate::docker_config::DockerConfig;
use crate::down_list::DownList;
use crate::routes::Routes;
use crate::{ClientOptions, OciError, Reference};

pub use push::PushOutcome;
pub use transport::{read_limited, unexpected_status};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a mirror that failed to answer is left out.
const MIRROR_BACKOFF: Duration = Duration::from_secs(30);

/// A client for OCI distribution registries.
///
/// Cloning is cheap and clones share connections and cached tokens.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    routes: Arc<Routes>,
    opts: ClientOptions,
    config: DockerConfig,
    auth: Mutex<auth::AuthCache>,
    mirror_health: DownList,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

/// An HTTP client builder with the options' user agent and timeouts.
fn http_builder(opts: &ClientOptions) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(opts.user_agent.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(opts.timeout)
}

/// Which registry and repository a request is about, for authentication and errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The registry as named in the reference (credential lookup, messages).
    pub(crate) registry: &'a str,
    /// The host serving the API.
    pub(crate) api_host: &'a str,
    /// The repository, if the request is about one.
    pub(crate) repository: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub(crate) fn of(reference: &'a Reference) -> Self {
        Self {
            registry: &reference.registry,
            api_host: reference.api_host(),
            repository: Some(&reference.repository),
        }
    }
}

impl RegistryClient {
    /// Builds a client; reads the docker config for credentials.
    pub fn new(opts: ClientOptions) -> Result<Self, OciError> {
        let config = DockerConfig::load(opts.docker_config.as_deref())?;
        let routes = Routes::new(&opts.proxies, opts.proxy_backoff, || http_builder(&opts))?;
        Ok(Self {
            inner: Arc::new(Inner {
                routes: Arc::new(routes),
                opts,
                config,
                auth: Mutex::new(auth::AuthCache::default()),
                mirror_health: DownList::new(MIRROR_BACKOFF),
            }),
        })
    }

    /// A client that logs in to `registry` with `username` and `password`
    /// (over any docker config entry). It shares connections with this
    /// one but not tokens, which belong to credentials.
    pub fn with_credentials(&self, registry: &str, username: &str, password: &str) -> Self {
        let credentials = crate::docker_config::Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        Self {
            inner: Arc::new(Inner {
                routes: Arc::clone(&self.inner.routes),
                opts: self.inner.opts.clone(),
                config: self.inner.config.with_credentials(registry, credentials),
                auth: Mutex::new(auth::AuthCache::default()),
                mirror_health: DownList::new(MIRROR_BACKOFF),
            }),
        }
    }

    /// The proxy routes, to share with other HTTP clients (stores).
    pub fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.inner.routes)
    }

    /// Routes through `proxies` instead, with this client's settings.
    pub fn routes_through(&self, proxies: &[String]) -> Result<Arc<Routes>, OciError> {
        let opts = &self.inner.opts;
        Routes::new(proxies, opts.proxy_backoff, || http_builder(opts)).map(Arc::new)
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Checks that `registry` (`host[:port]`, or `docker.io`) speaks the
    /// distribution API: `GET /v2/` must succeed, authenticating if asked to.
    pub async fn check_version(&self, registry: &str) -> Result<(), OciError> {
        let api_host = if registry == crate::reference::DOCKER_HUB {
            crate::reference::DOCKER_HUB_API_HOST
        } else {
            registry
        };
        let target = Target {
            registry,
            api_host,
            repository: None,
        };
        let url = self.url(&target, "/v2/")?;
        let call = transport::Call::new(Method::GET, url, target);
        let response = self.send(call).await?;
        match response.status() {
            StatusCode::OK => Ok(()),
            _ => Err(transport::unexpected_status(Method::GET, response).await),
        }
    }

    /// `scheme://api_host` + `path`.
    pub(crate) fn url(&self, target: &Target<'_>, path: &str) -> Result<Url, OciError> {
        let insecure = self.inner.opts.is_insecure(target.registry)
            || self.inner.opts.is_insecure(target.api_host);
        let scheme = if insecure { "http" } else { "https" };
        let text = format!("{scheme}://{}{path}", target.api_host);
        Url::parse(&text).map_err(|_| OciError::InvalidReference {
            input: text,
            reason: "does not form a valid URL",
        })
    }

    /// `/v2/<repository>/<kind>/<item>` for a reference.
    pub(crate) fn repo_url(
        &self,
        reference: &Reference,
        kind: &str,
        item: &str,
    ) -> Result<Url, OciError> {
        let path = format!("/v2/{}/{kind}/{item}", reference.repository);
        self.url(&Target::of(reference), &path)
    }
}

#[cfg(test)]
mod tests;

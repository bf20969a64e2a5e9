//! Settings of a [`crate::RegistryClient`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How a [`crate::RegistryClient`] talks to registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Registries (`host:port` or `host`) spoken to over plain HTTP.
    /// Nothing is plain HTTP unless listed here (or `insecure_all`), not even localhost.
    pub insecure_hosts: Vec<String>,
    /// Use plain HTTP for every registry.
    pub insecure_all: bool,
    /// Overall timeout of one request (for streamed blob bodies: the longest
    /// time without receiving data). Connecting has its own 10 s timeout.
    pub timeout: Duration,
    /// Retries of idempotent requests after connection errors, timeouts,
    /// HTTP 5xx and 429, with exponential backoff (200 ms doubling, at most 5 s).
    pub retries: u32,
    /// The docker `config.json` to take credentials from; default
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Pull-through mirrors by registry (`docker.io` → `["mirror:5000"]`):
    /// reads try them in order before the registry itself. Pushes never do.
    pub mirrors: HashMap<String, Vec<String>>,
    /// HTTP proxies, tried in order (`http://host:port`, or `DIRECT` for
    /// none); empty: the environment's `http_proxy` settings.
    pub proxies: Vec<String>,
    /// How long a proxy that failed is left out.
    pub proxy_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            insecure_all: false,
            timeout: Duration::from_secs(60),
            retries: 4,
            docker_config: None,
            user_agent: concat!("lazyfs/", env!("CARGO_PKG_VERSION")).to_owned(),
            mirrors: HashMap::new(),
            proxies: Vec::new(),
            proxy_backoff: Duration::from_secs(60),
        }
    }
}

impl ClientOptions {
    /// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
    /// An entry without a port matches that host on any port.
    pub fn is_insecure(&self, registry: &str) -> bool {
        if self.insecure_all {
            return true;
        }
        let host = host_without_port(registry);
        self.insecure_hosts
            .iter()
            .any(|h| h == registry || (h == host && host_without_port(h) == h))
    }
}

/// `host:port` → `host`; `[::1]:5000` → `[::1]`.
fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |i| &registry[..=i]);
    }
    registry.rsplit_once(':').map_or(registry, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_matching() {
        let opts = ClientOptions {
            insecure_hosts: vec!["127.0.0.1:5000".into(), "reg.local".into(), "[::1]".into()],
            ..ClientOptions::default()
        };
        assert!(opts.is_insecure("127.0.0.1:5000"));
        assert!(!opts.is_insecure("127.0.0.1:5001"));
        assert!(!opts.is_insecure("127.0.0.1"));
        assert!(opts.is_insecure("reg.local"));
        assert!(opts.is_insecure("reg.local:8080"));
        assert!(opts.is_insecure("[::1]:5000"));
        assert!(!opts.is_insecure("localhost:5000"));
        let all = ClientOptions {
            insecure_all: true,
            ..ClientOptions::default()
        };
        assert!(all.is_insecure("anything.example"));
    }
}

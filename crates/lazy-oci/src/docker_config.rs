//! Registry credentials from docker's `config.json` (`auths` section).
//!
//! Keys may be `host`, `https://host` or `https://host/v1/`; Docker Hub is
//! stored as `https://index.docker.io/v1/`. Credential helpers (`credsStore`,
//! `credHelpers`) are not supported.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::OciError;
use crate::error::CredentialState;

/// A username and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic …` header.
    pub(crate) fn basic_authorization(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(pair))
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials found in one docker config file (or none).
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerConfig {
    path: Option<PathBuf>,
    found: bool,
    auths: Vec<(String, Credentials)>,
}

impl DockerConfig {
    /// Loads `path`, or the default location when `None`: `$DOCKER_CONFIG/config.json`,
    /// else `~/.docker/config.json`. A missing file means no credentials.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, OciError> {
        let path = path.map(Path::to_path_buf).or_else(default_path);
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: Some(path),
                    ..Self::default()
                });
            }
            Err(e) => return Err(OciError::io(path, e)),
        };
        let file: ConfigFile =
            serde_json::from_slice(&text).map_err(|source| OciError::DockerConfig {
                path: path.clone(),
                source,
            })?;
        let auths = file
            .auths
            .into_iter()
            .filter_map(|(key, entry)| {
                let creds = entry.credentials();
                if creds.is_none() {
                    tracing::debug!(config = %path.display(), key, "docker config entry without usable credentials");
                }
                creds.map(|c| (key, c))
            })
            .collect();
        Ok(Self {
            path: Some(path),
            found: true,
            auths,
        })
    }

    /// The credentials stored for `registry` (a host with optional port).
    pub(crate) fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        let wanted = registry_aliases(registry);
        self.auths
            .iter()
            .find(|(key, _)| key == registry)
            .or_else(|| {
                self.auths
                    .iter()
                    .find(|(key, _)| wanted.contains(&normalize_key(key)))
            })
            .map(|(_, creds)| creds)
    }

    /// This config with `credentials` for `registry` taking precedence.
    pub(crate) fn with_credentials(&self, registry: &str, credentials: Credentials) -> Self {
        let mut config = self.clone();
        config.found = true;
        config.auths.insert(0, (registry.to_owned(), credentials));
        config
    }

    /// Describes the credential situation for an error message.
    pub(crate) fn state(&self, registry: &str) -> CredentialState {
        match (&self.path, self.found) {
            (Some(path), true) if self.credentials_for(registry).is_some() => {
                CredentialState::Rejected { path: path.clone() }
            }
            (Some(path), true) => CredentialState::NotInConfig { path: path.clone() },
            (path, _) => CredentialState::NoConfig { path: path.clone() },
        }
    }
}

impl AuthEntry {
    fn credentials(&self) -> Option<Credentials> {
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = STANDARD.decode(auth.trim()).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (username, password) = decoded.split_once(':')?;
            return Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        }
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// `https://host/v1/` → `host`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key).to_owned()
}

/// The config keys (normalized) under which `registry`'s credentials may be stored.
fn registry_aliases(registry: &str) -> Vec<String> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec![
                "index.docker.io".into(),
                "docker.io".into(),
                "registry-1.docker.io".into(),
            ]
        }
        other => vec![other.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let cfg = DockerConfig::load(Some(&path)).unwrap();
        (dir, cfg)
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn finds_credentials_under_every_key_form() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "localhost:5000": {{"auth": "{}"}},
                "https://reg.example.com": {{"auth": "{}"}},
                "http://other.example:8080/v2/": {{"username": "u4", "password": "p:4"}},
                "broken.example": {{"auth": "!!!"}}
            }}, "credsStore": "desktop"}}"#,
            b64("hub:pw1"),
            b64("local:pw:2"),
            b64("reg:pw3")
        );
        let (_dir, cfg) = config(&json);
        let user = |r: &str| {
            cfg.credentials_for(r)
                .map(|c| (c.username.as_str(), c.password.as_str()))
        };
        assert_eq!(user("docker.io"), Some(("hub", "pw1")));
        assert_eq!(user("registry-1.docker.io"), Some(("hub", "pw1")));
        assert_eq!(user("localhost:5000"), Some(("local", "pw:2")));
        assert_eq!(user("reg.example.com"), Some(("reg", "pw3")));
        assert_eq!(user("other.example:8080"), Some(("u4", "p:4")));
        assert_eq!(user("localhost:5001"), None);
        assert_eq!(user("broken.example"), None);
        assert!(matches!(
            cfg.state("localhost:5000"),
            CredentialState::Rejected { .. }
        ));
        assert!(matches!(
            cfg.state("nowhere"),
            CredentialState::NotInConfig { .. }
        ));
    }

    #[test]
    fn basic_header_and_redacted_debug() {
        let c = Credentials {
            username: "user".into(),
            password: "secret".into(),
        };
        assert_eq!(
            c.basic_authorization(),
            format!("Basic {}", b64("user:secret"))
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("secret") && debug.contains("user"),
            "{debug}"
        );
    }

    #[test]
    fn missing_and_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        let cfg = DockerConfig::load(Some(&missing)).unwrap();
        assert_eq!(cfg.credentials_for("x"), None);
        let msg = cfg.state("x").to_string();
        assert!(
            msg.contains("no docker config") && msg.contains("none.json"),
            "{msg}"
        );

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let err = DockerConfig::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
    }
}

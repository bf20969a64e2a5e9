//! Image references (`registry/repository[:tag][@digest]`) with docker's
//! normalization rules and the grammar of the distribution reference package.

use std::fmt;
use std::str::FromStr;

use crate::OciError;
use crate::digest::validate_digest;

/// The registry name docker uses for Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
///
/// `"busybox"` becomes `docker.io/library/busybox:latest`; a first path
/// component containing `.` or `:`, or equal to `localhost`, is a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, e.g. `localhost:5000` or `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when the input had neither tag nor digest.
    pub tag: Option<String>,
    /// Digest `sha256:<hex>`; when present it wins over the tag.
    pub digest: Option<String>,
}

impl Reference {
    /// The same repository with `tag` and without digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (the tag, if any, is kept for display).
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// What goes into a manifest URL: the digest if there is one, else the tag.
    pub fn tag_or_digest(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| DEFAULT_TAG.to_owned())
    }

    /// The host that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = OciError;

    fn from_str(input: &str) -> Result<Self, OciError> {
        let invalid = |reason| OciError::InvalidReference {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("empty reference"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|_| {
                    invalid("digest must be sha256: followed by 64 lowercase hex digits")
                })?;
                (rest, Some(digest.to_owned()))
            }
            None => (input, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                let tag = &name_and_tag[colon + 1..];
                if !is_valid_tag(tag) {
                    return Err(invalid(
                        "tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
                    ));
                }
                (&name_and_tag[..colon], Some(tag.to_owned()))
            }
            None => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(invalid("empty repository name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("repository name longer than 255 characters"));
        }
        let (registry, repository) = split_registry(name);
        if !is_valid_registry(registry) {
            return Err(invalid("invalid registry host"));
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        if !repository.split('/').all(is_valid_path_component) {
            return Err(invalid(
                "repository path components must be [a-z0-9] separated by '.', '_', '__' or '-'",
            ));
        }
        let registry = match registry {
            "index.docker.io" => DOCKER_HUB,
            other => other,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }
}

/// Splits `name` into registry and repository by docker's rule.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// A tag: `[\w][\w.-]{0,127}`.
pub(crate) fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            tag.len() <= MAX_TAG_LEN
                && word(*first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` with separator `[_.]|__|[-]+`.
fn is_valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return false;
        }
        let start = i;
        let sep = bytes[i];
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &bytes[start..i];
        let ok = match sep {
            b'.' => run == b".",
            b'_' => run == b"_" || run == b"__",
            b'-' => run.iter().all(|&b| b == b'-'),
            _ => false,
        };
        if !ok {
            return false;
        }
        expect_alnum = true;
    }
    !expect_alnum
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn is_valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    if port.is_some_and(|p| !port_ok(p)) {
        return false;
    }
    if registry.starts_with('[') {
        return true;
    }
    !host.is_empty() && host.split('.').all(is_valid_domain_component)
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_valid_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    !bytes.is_empty()
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;

//! The one error type of this crate: every variant names what it was about
//! (reference, URL, digest, path), so that a message alone tells a user what failed.

use std::fmt;
use std::path::PathBuf;

/// Whether credentials for a registry were available when it refused a request.
///
/// Part of [`OciError::Unauthorized`], so the message can tell a user whether
/// to log in or whether their login was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialState {
    /// No docker config file was found at the path looked at.
    NoConfig {
        /// The path looked at, if any could be determined.
        path: Option<PathBuf>,
    },
    /// The docker config exists but holds no credentials for the registry.
    NotInConfig {
        /// The docker config file.
        path: PathBuf,
    },
    /// Credentials from the docker config were sent and rejected.
    Rejected {
        /// The docker config file they came from.
        path: PathBuf,
    },
}

impl fmt::Display for CredentialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoConfig { path: Some(path) } => write!(
                f,
                "no credentials found: no docker config at {}",
                path.display()
            ),
            Self::NoConfig { path: None } => f.write_str("no credentials found: no docker config"),
            Self::NotInConfig { path } => write!(
                f,
                "no credentials for this registry in docker config {}",
                path.display()
            ),
            Self::Rejected { path } => write!(
                f,
                "the credentials from docker config {} were rejected",
                path.display()
            ),
        }
    }
}

/// Errors of the registry client and of OCI image-layout directories.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// An image reference does not follow the reference grammar.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The text that was parsed.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An image location (`oci:DIR:TAG` or a reference) cannot be parsed.
    #[error("invalid image location {input:?}: {reason}")]
    InvalidLocation {
        /// The text that was parsed.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An HTTP store could not be reached (at any of its URLs).
    #[error("store {store} unreachable ({url}): {source}")]
    StoreUnreachable {
        /// The store's name.
        store: String,
        /// The URL last tried.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP store served something unusable.
    #[error("store {store}: {reason}")]
    Store {
        /// The store's name.
        store: String,
        /// What is wrong.
        reason: String,
    },
    /// A proxy setting is neither a URL nor `DIRECT`.
    #[error("invalid proxy {proxy:?}: use http://host:port or DIRECT")]
    InvalidProxy {
        /// The setting.
        proxy: String,
    },
    /// A digest is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The text that was parsed.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The registry could not be reached (connection refused, DNS, timeout), after retries.
    #[error("registry {registry} unreachable after {attempts} attempt(s) ({url}): {source}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The URL last tried.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A transfer failed after the response had started (body read error).
    #[error("transfer from {url} failed: {source}")]
    Transfer {
        /// The URL being read.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry has no manifest for this reference (HTTP 404).
    #[error("manifest unknown: {reference}")]
    ManifestNotFound {
        /// The image reference.
        reference: String,
    },
    /// The registry has no blob with this digest in the repository (HTTP 404).
    #[error("blob unknown: {digest} in {repository}")]
    BlobNotFound {
        /// `registry/repository`.
        repository: String,
        /// The blob digest.
        digest: String,
    },
    /// The registry refused access (HTTP 401/403) after the available credentials were tried.
    #[error("unauthorized (HTTP {status}) at registry {registry}{}: {credentials}",
        repository.as_deref().map(|r| format!(" for repository {r}")).unwrap_or_default())]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository, when the request was about one.
        repository: Option<String>,
        /// The HTTP status (401 or 403).
        status: u16,
        /// Whether credentials were found and sent.
        credentials: CredentialState,
    },
    /// The registry asked for an authentication scheme this client does not speak.
    #[error("registry {registry} sent an unsupported authentication challenge: {challenge:?}")]
    UnsupportedChallenge {
        /// The registry host.
        registry: String,
        /// The `WWW-Authenticate` header value (never contains secrets).
        challenge: String,
    },
    /// Content does not hash to the digest it was fetched or announced by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (URL, reference or path).
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// Content has a different size than its descriptor says.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size it should have.
        expected: u64,
        /// The size it has.
        actual: u64,
    },
    /// Content is larger than the limit the caller allows.
    #[error("size limit exceeded for {what}: more than {limit} bytes")]
    TooLarge {
        /// What was read.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The registry answered with a status this operation does not expect.
    #[error("unexpected HTTP {status} for {method} {url}: {body}")]
    UnexpectedStatus {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The first 200 bytes of the response body (the registry's error message).
        body: String,
    },
    /// A range request was answered with the whole blob (HTTP 200 instead of 206).
    #[error(
        "registry ignored the range request for {url} (HTTP {status} instead of 206): range GETs are required"
    )]
    RangeNotSupported {
        /// The request URL.
        url: String,
        /// The status received.
        status: u16,
    },
    /// A response lacks something the protocol requires, or has it malformed.
    #[error("invalid response from {url}: {reason}")]
    InvalidResponse {
        /// The request URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A manifest or index has a media type this client does not handle.
    #[error("unsupported media type {media_type:?} for {reference}")]
    UnsupportedMediaType {
        /// Where the document came from.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest, index or index.json is not valid JSON of its kind.
    #[error("invalid {kind} for {what}: {source}")]
    InvalidDocument {
        /// "manifest", "image index", "token response", ...
        kind: &'static str,
        /// Where it came from.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// An image index has no linux/amd64 manifest.
    #[error("no linux/amd64 manifest in image index {reference} (available: {available})")]
    NoMatchingPlatform {
        /// The index reference.
        reference: String,
        /// The platforms it lists.
        available: String,
    },
    /// The docker config file exists but cannot be parsed.
    #[error("invalid docker config {}: {source}", path.display())]
    DockerConfig {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A directory is not a usable OCI image layout.
    #[error("OCI layout {}: {reason}", path.display())]
    Layout {
        /// The offending file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// An OCI layout's index.json has no manifest with this tag.
    #[error("tag {tag:?} not found in OCI layout {}", dir.display())]
    LayoutTagNotFound {
        /// The layout directory.
        dir: PathBuf,
        /// The tag looked for.
        tag: String,
    },
    /// A blob is missing from an OCI layout.
    #[error("blob {digest} missing from OCI layout {}", dir.display())]
    LayoutBlobNotFound {
        /// The layout directory.
        dir: PathBuf,
        /// The blob digest.
        digest: String,
    },
    /// A file system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build HTTP client: {source}")]
    HttpClient {
        /// The builder error.
        #[source]
        source: reqwest::Error,
    },
}

impl OciError {
    /// Builds an [`OciError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

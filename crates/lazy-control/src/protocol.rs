//! The control protocol: one JSON request per line on the unix socket, one
//! JSON response line back.

use lazy_format::PrefetchRecord;
use serde::{Deserialize, Serialize};

use crate::error::ControlError;

/// What to fetch after an attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefetchMode {
    /// Nothing: fetch on first read only.
    None,
    /// The image's prefetch record, if it has one.
    #[default]
    Record,
    /// The record, then every other chunk of the image at low priority.
    All,
}

impl std::str::FromStr for PrefetchMode {
    type Err = String;

    /// `none`, `record` or `all`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Self::None),
            "record" => Ok(Self::Record),
            "all" => Ok(Self::All),
            _ => Err(format!(
                "unknown prefetch mode {text:?}: use none, record or all"
            )),
        }
    }
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Is the daemon up?
    Ping,
    /// Attach every layer of a lazy image (registry reference).
    Attach {
        /// The image, e.g. `localhost:5000/r-base:lazy`.
        image: String,
        /// Protect its chunks from eviction while attached.
        #[serde(default)]
        pin: bool,
        /// What to fetch ahead of readers (default: the daemon's setting).
        #[serde(default)]
        prefetch: Option<PrefetchMode>,
        /// Answer with the image's config too ([`Response::Image`]), fetched
        /// alongside the layer metadata: what a runtime needs, in one call.
        #[serde(default)]
        with_config: bool,
        /// Whether to ask the registry when the image was attached before.
        #[serde(default)]
        pull: PullPolicy,
        /// Log in with these instead of the daemon's docker config; kept in
        /// memory for the layers' chunk fetches, never logged or stored.
        #[serde(default)]
        credentials: Option<RegistryCredentials>,
    },
    /// Attach one layer blob of a repository, without its image (what a
    /// snapshotter asks for, layer by layer).
    AttachLayer {
        /// An image reference naming the repository, e.g. `localhost:5000/r-base:lazy`.
        image: String,
        /// The layer blob's digest.
        digest: String,
        /// Log in with these instead of the daemon's docker config.
        #[serde(default)]
        credentials: Option<RegistryCredentials>,
    },
    /// Record which chunks of an attached image's layers are read, in order.
    RecordStart {
        /// The image (as attached).
        image: String,
    },
    /// End the recording and return it.
    RecordStop,
    /// Detach a layer (digest) or every layer of an image (reference).
    Detach {
        /// Layer digest or image reference.
        target: String,
    },
    /// Attached layers.
    List,
    /// Cache and fetch counters.
    Stats,
    /// Evict unused chunks down to `target_bytes` (0 = everything unused).
    Gc {
        /// Bytes to keep at most.
        target_bytes: u64,
    },
    /// Re-hash every cached chunk; drop corrupt ones.
    Verify,
    /// Per attached image: size, cached bytes, pinned.
    Images,
    /// Show an attached image with its layers merged, as one read-only
    /// directory (`<mount>/images/<manifest digest>`), for chroot-based
    /// runners; answers its path.
    Flat {
        /// The image, as attached.
        image: String,
    },
    /// Pin an attached image (its chunks are never evicted), fetching
    /// every chunk not cached yet if `fetch`; or unpin it.
    Pin {
        /// The image, as attached.
        image: String,
        /// Pin (true) or unpin (false).
        pinned: bool,
        /// Fetch what is not cached, and answer once it is.
        #[serde(default)]
        fetch: bool,
    },
}

/// What an attached image holds in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUsage {
    /// The image reference, as attached.
    pub image: String,
    /// Its layers.
    pub layers: u64,
    /// Distinct chunks of its layers.
    pub chunks: u64,
    /// Their bytes (uncompressed, as cached).
    pub bytes: u64,
    /// Bytes of those chunks in the cache now (chunks shared with other
    /// images count for each).
    pub cached_bytes: u64,
    /// Whether the image is pinned.
    pub pinned: bool,
}

/// An attached layer as reported to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Blob digest.
    pub digest: String,
    /// The image it was attached for.
    pub image: String,
    /// Where it is mounted.
    pub path: String,
    /// Entries in the layer.
    pub entries: u64,
    /// File content bytes.
    pub file_bytes: u64,
    /// Whether its chunks are pinned.
    pub pinned: bool,
}

/// A registry login. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// When attach asks the registry, as `docker run --pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Always resolve the reference in the registry (what `lazyctl attach` does).
    #[default]
    Always,
    /// Use the image as attached before, if it was; else the registry.
    Missing,
    /// Only an image attached before; never the registry.
    Never,
}

/// An attached image as a runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedImage {
    /// Manifest digest.
    pub manifest_digest: String,
    /// The image config blob (OCI image config JSON), verified.
    pub config: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
}

/// Cache statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsInfo {
    /// Bytes cached (chunks and whole-file copies).
    pub cache_bytes: u64,
    /// Chunks cached.
    pub cache_chunks: u64,
    /// The quota.
    pub quota_bytes: u64,
    /// Stored bytes fetched since start.
    pub fetched_bytes: u64,
    /// Chunks fetched since start.
    pub fetched_chunks: u64,
    /// Range requests since start.
    pub requests: u64,
    /// Cache hits since start.
    pub hits: u64,
    /// Cache misses since start.
    pub misses: u64,
    /// Evictions since start.
    pub evictions: u64,
    /// Verification failures since start.
    pub verification_failures: u64,
    /// Attached layers.
    pub attached_layers: u64,
    /// Whole-file copies of multi-chunk files held for passthrough (their
    /// bytes count in `cache_bytes`, not they in `cache_chunks`).
    #[serde(default)]
    pub copies: u64,
    /// Bytes of those copies.
    #[serde(default)]
    pub copy_bytes: u64,
    /// Files waiting for or in copying.
    #[serde(default)]
    pub assembly_queue: u64,
    /// Time the range requests since start took, summed, in microseconds
    /// (divided by `requests`: the mean time of one, to set beside the RTT).
    #[serde(default)]
    pub fetch_micros: u64,
    /// Images whose background prefetch still runs (the later parts of a
    /// recorded startup set wait up to a second each for readers to follow).
    #[serde(default)]
    pub prefetching: u64,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Done, nothing to report.
    Ok,
    /// Layers attached or listed (bottom first for an attach).
    Layers(Vec<LayerInfo>),
    /// An attached image: its layers and its config (`Attach` with
    /// `with_config`).
    Image(AttachedImage),
    /// Statistics.
    Stats(StatsInfo),
    /// Chunks and bytes removed by gc, or checked and removed by verify.
    Removed {
        /// Chunks examined (verify) or removed (gc).
        chunks: u64,
        /// Bytes removed (gc) or corrupt chunks removed (verify).
        removed: u64,
    },
    /// A finished recording.
    Record(PrefetchRecord),
    /// Attached images and what they hold in the cache.
    Images(Vec<ImageUsage>),
    /// A directory (a flat image view).
    Path(String),
    /// The request failed.
    Error(ControlError),
}

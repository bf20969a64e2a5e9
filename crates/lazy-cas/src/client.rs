//! Reading a store over HTTP. Every request goes to the store's URLs in
//! order (mirrors), each through the proxy routes; a URL that fails is left
//! out for a back-off, one that lacks a file (404) is passed over. Every
//! object is checked against its digest, so neither a mirror nor a proxy
//! can hand out wrong bytes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use lazy_oci::{
    DownList, FetchedManifest, MANIFEST_SIZE_LIMIT, OciError, Routes, read_limited, sha256_digest,
    unexpected_status, validate_digest,
};
use reqwest::{StatusCode, Url};

use crate::layout::{object_path, pieces_path, tag_path};
use crate::pieces::PieceTable;

/// Piece tables are 36 bytes per piece; a bigger one is refused.
const MAX_PIECE_TABLE: u64 = 64 << 20;
/// A piece is at most this big (the publisher cuts at 4 MiB; metadata tails
/// of huge layers can be bigger).
const MAX_PIECE: u64 = 256 << 20;

/// Where a store is and how to read it.
#[derive(Debug, Clone)]
pub struct CasOptions {
    /// The store's name (what image references start with).
    pub name: String,
    /// Its URLs, in the order to try them (mirrors of each other).
    pub urls: Vec<String>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Rounds over all URLs after failures, with a growing pause.
    pub retries: u32,
    /// How long a URL that failed is left out.
    pub backoff: Duration,
    /// Objects fetched at once for one range read.
    pub parallel: usize,
}

/// A store, read over HTTP. Cheap to clone.
#[derive(Clone)]
pub struct CasClient {
    inner: Arc<Inner>,
}

struct Inner {
    options: CasOptions,
    urls: Vec<Url>,
    health: DownList,
    routes: Arc<Routes>,
    pieces: Mutex<HashMap<String, Arc<PieceTable>>>,
}

impl std::fmt::Debug for CasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CasClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl CasClient {
    /// A client of the store at `options.urls`, through `routes`.
    pub fn new(options: CasOptions, routes: Arc<Routes>) -> Result<Self, OciError> {
        let mut urls = Vec::new();
        for text in &options.urls {
            let invalid = || OciError::InvalidLocation {
                input: text.clone(),
                reason: "a store URL is http(s)://host[:port]/path",
            };
            let mut url = Url::parse(text).map_err(|_| invalid())?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid());
            }
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(OciError::InvalidLocation {
                input: options.name.clone(),
                reason: "the store has no URL",
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                health: DownList::new(options.backoff),
                options,
                urls,
                routes,
                pieces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.options.name
    }

    /// The manifest digest `repository:tag` names.
    pub async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<String, OciError> {
        let not_found = || OciError::ManifestNotFound {
            reference: format!("{}/{repository}:{tag}", self.name()),
        };
        let bytes = self
            .get(&tag_path(repository, tag), 1024)
            .await?
            .ok_or_else(not_found)?;
        let text = String::from_utf8_lossy(&bytes);
        let digest = text.trim();
        validate_digest(digest)?;
        Ok(digest.to_owned())
    }

    /// The manifest with `digest`.
    pub async fn fetch_manifest(&self, digest: &str) -> Result<FetchedManifest, OciError> {
        let what = format!("manifest {digest} in store {}", self.name());
        let bytes =
            self.object(digest, MANIFEST_SIZE_LIMIT)
                .await?
                .ok_or(OciError::ManifestNotFound {
                    reference: what.clone(),
                })?;
        FetchedManifest::from_bytes(bytes, digest, &what)
    }

    /// Object `digest` (at most `limit` bytes), checked; `None` if absent.
    pub async fn object(&self, digest: &str, limit: u64) -> Result<Option<Vec<u8>>, OciError> {
        let Some(bytes) = self.get(&object_path(digest)?, limit).await? else {
            return Ok(None);
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("object {digest} of store {}", self.name()),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(Some(bytes))
    }

    /// A whole small blob (config, prefetch record): one object, as the
    /// publisher stores blobs that are not layers.
    pub async fn blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        self.object(digest, limit)
            .await?
            .ok_or_else(|| self.blob_not_found(digest))
    }

    /// The size of layer blob `digest`, if the store has it.
    pub async fn blob_size(&self, digest: &str) -> Result<Option<u64>, OciError> {
        match self.pieces(digest).await {
            Ok(table) => Ok(Some(table.blob_size())),
            Err(OciError::BlobNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes `range` of layer blob `digest`, from the pieces that hold them.
    pub async fn read_range(&self, digest: &str, range: Range<u64>) -> Result<Vec<u8>, OciError> {
        let table = self.pieces(digest).await?;
        if range.start > range.end || range.end > table.blob_size() {
            return Err(OciError::Store {
                store: self.name().to_owned(),
                reason: format!(
                    "range {range:?} is outside the {}-byte blob {digest}",
                    table.blob_size()
                ),
            });
        }
        let pieces = table.overlapping(range.clone()).to_vec();
        let parallel = self.inner.options.parallel.max(1);
        let fetched: Vec<_> = futures_util::stream::iter(pieces)
            .map(|piece| async move {
                let bytes = self.object(&piece.digest(), u64::from(piece.len)).await?;
                let bytes = bytes.ok_or_else(|| self.blob_not_found(&piece.digest()))?;
                Ok::<_, OciError>((piece, bytes))
            })
            .buffered(parallel)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        for (piece, bytes) in fetched {
            let from = range.start.max(piece.offset) - piece.offset;
            let to = range.end.min(piece.range().end) - piece.offset;
            out.extend_from_slice(
                &bytes[usize::try_from(from).expect("in piece")
                    ..usize::try_from(to).expect("in piece")],
            );
        }
        Ok(out)
    }

    /// The piece table of layer blob `digest`, fetched once.
    async fn pieces(&self, digest: &str) -> Result<Arc<PieceTable>, OciError> {
        if let Some(table) = self.inner.pieces.lock().expect("pieces lock").get(digest) {
            return Ok(Arc::clone(table));
        }
        let bytes = self
            .get(&pieces_path(digest)?, MAX_PIECE_TABLE)
            .await?
            .ok_or_else(|| self.blob_not_found(digest))?;
        let table = PieceTable::decode(&bytes, None).map_err(|reason| OciError::Store {
            store: self.name().to_owned(),
            reason: format!("the piece table of {digest}: {reason}"),
        })?;
        if table.pieces().iter().any(|p| u64::from(p.len) > MAX_PIECE) {
            return Err(OciError::TooLarge {
                what: format!("a piece of {digest}"),
                limit: MAX_PIECE,
            });
        }
        let table = Arc::new(table);
        let mut cached = self.inner.pieces.lock().expect("pieces lock");
        Ok(Arc::clone(cached.entry(digest.to_owned()).or_insert(table)))
    }

    fn blob_not_found(&self, digest: &str) -> OciError {
        OciError::BlobNotFound {
            repository: format!("store {}", self.name()),
            digest: digest.to_owned(),
        }
    }

    /// GETs `path` from the first URL that has it; `None` when no URL has
    /// it and at least one says so (404). Failures move on to the next
    /// URL, and after a round of failures, after a pause, round again
    /// (`retries` times).
    async fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, OciError> {
        let options = &self.inner.options;
        let mut last_error = None;
        for round in 0..=options.retries {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(200) * round).await;
            }
            let mut missing = 0;
            let order = self.inner.health.in_order(&self.inner.urls, Url::as_str);
            for base in &order {
                let url = base.join(path).map_err(|_| OciError::InvalidLocation {
                    input: format!("{base}{path}"),
                    reason: "does not form a valid URL",
                })?;
                match self.get_one(&url, limit).await {
                    Ok(Some(bytes)) => return Ok(Some(bytes)),
                    Ok(None) => missing += 1,
                    Err(e) => {
                        if order.len() > 1 {
                            tracing::warn!(store = %options.name, url = %base, "store URL failed, using the next one for {:?}: {e}", options.backoff);
                        }
                        self.inner.health.mark_down(base.as_str());
                        last_error = Some(e);
                    }
                }
            }
            // A URL that answered "no such file" is believed over others
            // that could not answer: contents are named by digest, so a
            // mirror that has the name has the file.
            if missing > 0 {
                return Ok(None);
            }
        }
        Err(last_error.expect("a round without success failed somewhere"))
    }

    async fn get_one(&self, url: &Url, limit: u64) -> Result<Option<Vec<u8>>, OciError> {
        let timeout = self.inner.options.timeout;
        let sent = self
            .inner
            .routes
            .send(|http| http.get(url.clone()).timeout(timeout))
            .await;
        let response = sent.map_err(|source| OciError::StoreUnreachable {
            store: self.name().to_owned(),
            url: url.to_string(),
            source,
        })?;
        match response.status() {
            StatusCode::OK => Ok(Some(read_limited(response, limit, url.as_str()).await?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(unexpected_status(reqwest::Method::GET, response).await),
        }
    }
}

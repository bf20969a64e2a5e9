//! A blocking client of the control socket, for lazyctl, lazyrun, tests and
//! every later front end. One typed method per operation; [`ControlClient::call`]
//! is the raw request/response underneath.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lazy_format::PrefetchRecord;

use crate::error::{ControlError, ErrorKind};
use crate::protocol::{
    AttachedImage, ImageUsage, LayerInfo, PrefetchMode, PullPolicy, RegistryCredentials, Request,
    Response, StatsInfo,
};

/// Talks to a running lazyfsd.
#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
    timeout: Duration,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("lazyfsd is not running (cannot connect to {socket}): {source}")]
    NotRunning {
        /// Socket path.
        socket: PathBuf,
        /// Connect error.
        source: std::io::Error,
    },
    /// The conversation broke.
    #[error("talking to lazyfsd at {socket}: {reason}")]
    Protocol {
        /// Socket path.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("lazyfsd: {0}")]
    Daemon(ControlError),
}

impl ClientError {
    /// The kind of failure: the daemon's, or `Unreachable` when the daemon
    /// itself could not be talked to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotRunning { .. } | Self::Protocol { .. } => ErrorKind::Unreachable,
            Self::Daemon(e) => e.kind,
        }
    }
}

/// What an attach asks for (see [`Request::Attach`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Protect the image's chunks from eviction while attached.
    pub pin: bool,
    /// Prefetch mode; `None` is the daemon's setting.
    pub prefetch: Option<PrefetchMode>,
    /// When to ask the registry.
    pub pull: PullPolicy,
    /// A registry login instead of the daemon's docker config.
    pub credentials: Option<RegistryCredentials>,
}

impl ControlClient {
    /// A client of the daemon at `socket`; requests time out after `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns the answer (daemon errors as `Err`).
    pub fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let protocol = |reason: String| ClientError::Protocol {
            socket: self.socket.clone(),
            reason,
        };
        let mut stream =
            UnixStream::connect(&self.socket).map_err(|source| ClientError::NotRunning {
                socket: self.socket.clone(),
                source,
            })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|e| protocol(e.to_string()))?;
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        stream
            .write_all(&line)
            .map_err(|e| protocol(e.to_string()))?;
        let mut answer = String::new();
        BufReader::new(&stream)
            .read_line(&mut answer)
            .map_err(|e| protocol(e.to_string()))?;
        match serde_json::from_str(&answer)
            .map_err(|e| protocol(format!("bad answer {answer:?}: {e}")))?
        {
            Response::Error(error) => Err(ClientError::Daemon(error)),
            response => Ok(response),
        }
    }

    /// Whether a daemon answers a ping.
    pub fn is_up(&self) -> bool {
        matches!(self.call(&Request::Ping), Ok(Response::Ok))
    }

    /// Attaches every layer of `image`; answers with its config and its
    /// layers, bottom first.
    pub fn attach(
        &self,
        image: &str,
        options: AttachOptions,
    ) -> Result<AttachedImage, ClientError> {
        let request = Request::Attach {
            image: image.to_owned(),
            pin: options.pin,
            prefetch: options.prefetch,
            with_config: true,
            pull: options.pull,
            credentials: options.credentials,
        };
        match self.call(&request)? {
            Response::Image(image) => Ok(image),
            other => Err(self.unexpected("attach", &other)),
        }
    }

    /// Attaches one layer blob of the repository `image` names.
    pub fn attach_layer(
        &self,
        image: &str,
        digest: &str,
        credentials: Option<RegistryCredentials>,
    ) -> Result<LayerInfo, ClientError> {
        let request = Request::AttachLayer {
            image: image.to_owned(),
            digest: digest.to_owned(),
            credentials,
        };
        match self.call(&request)? {
            Response::Layers(mut layers) if layers.len() == 1 => Ok(layers.remove(0)),
            other => Err(self.unexpected("attach layer", &other)),
        }
    }

    /// Detaches a layer (digest) or every layer of an image (reference).
    pub fn detach(&self, target: &str) -> Result<(), ClientError> {
        self.expect_ok(
            "detach",
            &Request::Detach {
                target: target.to_owned(),
            },
        )
    }

    /// Attached layers.
    pub fn list(&self) -> Result<Vec<LayerInfo>, ClientError> {
        match self.call(&Request::List)? {
            Response::Layers(layers) => Ok(layers),
            other => Err(self.unexpected("list", &other)),
        }
    }

    /// Cache and fetch counters.
    pub fn stats(&self) -> Result<StatsInfo, ClientError> {
        match self.call(&Request::Stats)? {
            Response::Stats(stats) => Ok(stats),
            other => Err(self.unexpected("stats", &other)),
        }
    }

    /// Evicts unused chunks down to `target_bytes`; returns (chunks, bytes) removed.
    pub fn gc(&self, target_bytes: u64) -> Result<(u64, u64), ClientError> {
        match self.call(&Request::Gc { target_bytes })? {
            Response::Removed { chunks, removed } => Ok((chunks, removed)),
            other => Err(self.unexpected("gc", &other)),
        }
    }

    /// Re-hashes the cache; returns (checked, corrupt removed).
    pub fn verify(&self) -> Result<(u64, u64), ClientError> {
        match self.call(&Request::Verify)? {
            Response::Removed { chunks, removed } => Ok((chunks, removed)),
            other => Err(self.unexpected("verify", &other)),
        }
    }

    /// Shows attached `image` merged into one directory; returns its path.
    pub fn flat(&self, image: &str) -> Result<String, ClientError> {
        let request = Request::Flat {
            image: image.to_owned(),
        };
        match self.call(&request)? {
            Response::Path(path) => Ok(path),
            other => Err(self.unexpected("flat", &other)),
        }
    }

    /// Attached images and what they hold in the cache.
    pub fn images(&self) -> Result<Vec<ImageUsage>, ClientError> {
        match self.call(&Request::Images)? {
            Response::Images(images) => Ok(images),
            other => Err(self.unexpected("images", &other)),
        }
    }

    /// Pins `image` (fetching what is not cached, if `fetch`), or unpins it.
    pub fn pin(&self, image: &str, pinned: bool, fetch: bool) -> Result<ImageUsage, ClientError> {
        let request = Request::Pin {
            image: image.to_owned(),
            pinned,
            fetch,
        };
        match self.call(&request)? {
            Response::Images(mut images) if images.len() == 1 => Ok(images.remove(0)),
            other => Err(self.unexpected("pin", &other)),
        }
    }

    /// Starts recording the chunk reads of an attached image.
    pub fn record_start(&self, image: &str) -> Result<(), ClientError> {
        self.expect_ok(
            "record start",
            &Request::RecordStart {
                image: image.to_owned(),
            },
        )
    }

    /// Ends the recording and returns it.
    pub fn record_stop(&self) -> Result<PrefetchRecord, ClientError> {
        match self.call(&Request::RecordStop)? {
            Response::Record(record) => Ok(record),
            other => Err(self.unexpected("record stop", &other)),
        }
    }

    fn expect_ok(&self, what: &str, request: &Request) -> Result<(), ClientError> {
        match self.call(request)? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(what, &other)),
        }
    }

    fn unexpected(&self, what: &str, answer: &Response) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.clone(),
            reason: format!("unexpected answer to {what}: {answer:?}"),
        }
    }
}

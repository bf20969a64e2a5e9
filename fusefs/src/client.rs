//! A blocking client of the control socket, for lazyctl, lazyrun and tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{Request, Response};

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
    Daemon(String),
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
            Response::Error(message) => Err(ClientError::Daemon(message)),
            response => Ok(response),
        }
    }

    /// Whether a daemon answers a ping.
    pub fn is_up(&self) -> bool {
        matches!(self.call(&Request::Ping), Ok(Response::Ok))
    }
}

//! What can go wrong putting an image into containerd, said so that the
//! user knows what to fix.

use std::path::PathBuf;

use containerd_client::tonic::Status;

/// A failed import.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// Nothing answers on the socket.
    #[error("cannot reach containerd at {address} (is it running? see --address): {source}")]
    Connect {
        /// The socket.
        address: PathBuf,
        /// Why.
        source: containerd_client::tonic::transport::Error,
    },
    /// containerd refused or failed a call.
    #[error("containerd: {what}: {}{}", .status.message(), hint(.status))]
    Rpc {
        /// What was being done.
        what: String,
        /// containerd's answer (boxed: a `Status` is large).
        status: Box<Status>,
    },
    /// The snapshotter made an ordinary snapshot instead of a remote one:
    /// containerd would have to download and apply the lazy layer, which
    /// it cannot.
    #[error(
        "snapshotter {snapshotter:?} did not serve layer {layer} lazily (is it containerd-lazy-grpc, with lazyfsd running? see its log)"
    )]
    NotRemote {
        /// The snapshotter asked.
        snapshotter: String,
        /// The layer's digest.
        layer: String,
    },
    /// The image's config is not what an OCI config looks like.
    #[error("the image config {digest}: {reason}")]
    BadConfig {
        /// Config digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
}

impl ContainerdError {
    /// An RPC failure while doing `what`.
    pub fn rpc(what: impl Into<String>, status: Status) -> Self {
        Self::Rpc {
            what: what.into(),
            status: Box::new(status),
        }
    }
}

/// A hint for the answers users meet when containerd is not set up.
fn hint(status: &Status) -> &'static str {
    let message = status.message();
    if message.contains("snapshotter not loaded") {
        " (add the lazyfs proxy plugin to containerd's config: see `lazyctl containerd-config`)"
    } else if message.contains("while dialing") {
        " (is containerd-lazy-grpc running?)"
    } else {
        ""
    }
}

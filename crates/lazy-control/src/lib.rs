//! The seam between lazyfsd and the programs that drive it.
//!
//! - [`protocol`]: one JSON request per line on lazyfsd's unix socket, one
//!   JSON response line back.
//! - [`client`]: a typed, blocking client ([`ControlClient`]).
//! - [`error`]: typed failures ([`ControlError`] = [`ErrorKind`] + message)
//!   and the one table mapping kinds to exit codes and gRPC codes.
//! - [`config`]: `/etc/lazyfs/config.toml`, read by the daemon and the front
//!   ends alike; [`size`]: human-readable sizes.
//! - [`snapshot_labels`]: what `lazyctl pull --containerd` tells the
//!   containerd snapshotter through snapshot labels.
//!
//! Front ends (lazyctl, lazyrun, the snapshotter, the Podman store, site
//! tools) link this crate and nothing of the daemon's insides.

pub mod client;
pub mod config;
pub mod error;
pub mod protocol;
pub mod size;
pub mod snapshot_labels;

pub use client::{AttachOptions, ClientError, ControlClient};
pub use config::{
    ConfigError, DEFAULT_CONFIG, DaemonConfig, ProxyConfig, RegistryConfig, RunConfig, StoreConfig,
};
pub use error::{ControlError, ErrorKind, ErrorMapping};
pub use protocol::{
    AttachedImage, ImageUsage, LayerInfo, PrefetchMode, PullPolicy, RegistryCredentials, Request,
    Response, StatsInfo,
};

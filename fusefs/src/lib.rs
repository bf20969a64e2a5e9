//! lazyfsd: one daemon per host, one read-only FUSE mount where each
//! attached lazy layer is a directory `<mnt>/<layer digest>/`, its content
//! fetched on first read into the host-shared [`lazy_cache::ChunkCache`].
//!
//! The FUSE adapter ([`fuse`]) is thin: the filesystem view is computed by
//! [`view::LayerTable`] from the attached layers' metadata; reads go to the
//! cache, which fetches through a [`source::RegistrySource`] per layer.
//! Clients drive the daemon over a unix socket ([`protocol`], [`client`]).

pub mod attach;
pub mod attached;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod error;
pub mod fuse;
pub mod images;
pub mod inode;
pub mod layer;
pub mod metrics_http;
pub mod overlay;
pub mod passthrough;
pub mod prefetch;
pub mod protocol;
pub mod recorder;
pub mod size;
pub mod source;
pub mod state;
pub mod view;

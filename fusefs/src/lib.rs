//! lazyfsd: one daemon per host, one read-only FUSE mount where each
//! attached lazy layer is a directory `<mnt>/<layer digest>/`, its content
//! fetched on first read into the host-shared [`lazy_cache::ChunkCache`].
//!
//! The parts:
//! - `fuse`: the thin fuser adapter; the filesystem view is computed from the
//!   attached layers' metadata, reads go to the cache, which fetches through
//!   a `source::BlobSource` per layer (a registry or an HTTP store).
//! - `control`: the control socket server, speaking [`lazy_control`]'s
//!   protocol; every failure leaves it as a typed [`lazy_control::ControlError`].
//! - `state`: the daemon's state and operations (attach, detach, …) and what
//!   it persists (attached layers, images attached before).
//! - `prefetch`, `recorder`: fetching ahead of readers, recording reads.
//! - `store`: the additional layer store of Podman and CRI-O, a second
//!   mount whose layer directories attach on lookup.
//! - `supervisor`, `takeover`: `lazyfsd --supervise` holds the mount's
//!   `/dev/fuse` descriptor, and a restarted or upgraded daemon takes the
//!   live session over, so that running containers never see it go.
//!
//! Clients use [`lazy_control`], never this crate: it exports only what the
//! `lazyfsd` binary needs.

mod control;
mod daemon;
mod fuse;
mod libs;
mod metrics_http;
mod prefetch;
mod recorder;
mod shutdown;
mod source;
mod state;
mod store;
mod supervisor;
mod takeover;

pub use daemon::run;
pub use supervisor::supervise;

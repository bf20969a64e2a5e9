//! `containerd-lazy-grpc`, the lazyfs snapshotter for containerd: a proxy
//! snapshotter (containerd's `[proxy_plugins]`, type `snapshot`) that
//! serves lazy layers as remote snapshots mounted through lazyfsd and is an
//! ordinary overlay snapshotter for every other layer and for containers.
//!
//! The parts, each a plain library type that tests drive directly:
//! - [`store`]: snapshot metadata, persisted, with containerd's rules
//!   (parents must be committed, only active snapshots commit, a snapshot
//!   with children cannot be removed);
//! - [`filters`]: containerd's filter language for `Walk`;
//! - [`mounts`]: the bind and overlay mounts of a snapshot;
//! - [`service`]: containerd's snapshots API over those, remote snapshots
//!   of lazy layers through lazyfsd;
//! - [`usage`]: disk usage, as `du` counts it.
//!
//! Metadata is a JSON file replaced atomically (lazy-statefile), not
//! rocksdb: front ends do not link the daemon's storage engine.

pub mod filters;
pub mod mounts;
pub mod service;
pub mod store;
pub mod usage;

//! What the lazyfs containerd snapshotter and its clients share: the
//! snapshot labels that tell it a layer can be served lazily, and how its
//! errors begin. `lazyctl pull --containerd` sets them; so
//! does containerd's CRI plugin (all but [`LAZY_LAYER`]) when
//! `disable_snapshot_annotations = false`. Labels under
//! `containerd.io/snapshot/` are the ones containerd passes on to a
//! snapshotter.

/// The chain ID the layer's snapshot is to be committed as.
pub const TARGET: &str = "containerd.io/snapshot.ref";
/// The image the layer belongs to (a registry reference).
pub const IMAGE: &str = "containerd.io/snapshot/cri.image-ref";
/// The layer's blob digest.
pub const LAYER: &str = "containerd.io/snapshot/cri.layer-digest";
/// Set (to "true") by `lazyctl pull --containerd`: the layer is known to
/// be lazy, so failing to attach it is an error, never a cue to apply it.
pub const LAZY_LAYER: &str = "containerd.io/snapshot/lazyfs.lazy-layer";
/// Marks the snapshotter's remote snapshots (as stargz-snapshotter does).
pub const REMOTE: &str = "containerd.io/snapshot/remote";

/// How the snapshotter's own errors begin, so that a client tells them
/// from containerd failing to reach it.
pub const SNAPSHOTTER_PREFIX: &str = "lazyfs snapshotter:";

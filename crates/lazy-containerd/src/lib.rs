//! Lazy images in containerd, through its gRPC API: [`import()`] puts the
//! manifest and config in the content store, has the lazyfs snapshotter
//! make a remote snapshot of every layer (lazyfsd attaches it; nothing is
//! downloaded) and creates the image record, so that `ctr run
//! --snapshotter lazyfs IMAGE …` starts it at once.

pub mod chain;
pub mod connection;
pub mod content;
pub mod error;
pub mod import;

pub use connection::{Containerd, DEFAULT_ADDRESS, DEFAULT_NAMESPACE};
pub use error::ContainerdError;
pub use import::{Blob, ImportProgress, Imported, LayerOutcome, LazyImage, import};

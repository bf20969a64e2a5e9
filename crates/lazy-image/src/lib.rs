//! The read side of lazy images, shared by the converter and the daemon:
//! where images live ([`ImageStore`]: a registry repository or an OCI
//! layout), reading a lazy image's manifest and per-layer metadata, and
//! prefetch records stored next to an image. Writes nothing but prefetch
//! records; knows nothing of tar or of converting.

mod error;
mod prefetch_store;
mod read;
mod store;

pub use error::LazyImageError;
pub use prefetch_store::{fetch_prefetch_record, prefetch_tag, push_prefetch_record};
pub use read::{
    ImageInspection, LayerInspection, decode_layer_tail, fetch_layer_tail, fetch_lazy_manifest,
    format_err, inspect_image, read_layer_meta, too_small,
};
pub use store::ImageStore;

//! Converts OCI image layers into lazyfs lazy layers, and lazy layers back
//! into directory trees.
//!
//! [`convert_layer`] streams one layer (tar, tar+gzip or tar+zstd) through
//! parallel chunk compression into a lazy layer blob; nothing is held in
//! memory whole. Tar entries that would escape the root (`..`, absolute
//! names, writes beneath a symlink) are refused with an error naming them.
//! [`unpack_layer`] applies lazy layers to a directory the way an OCI
//! unpacker applies tar layers. [`relayout_image`] rewrites a stored lazy
//! image so that the chunks its prefetch record reads sit in that order.

mod entry;
mod error;
mod image;
mod image_error;
mod input;
mod layer;
mod pipeline;
mod relayout;
mod relayout_image;
mod tar_path;
mod tree;
mod unpack;
mod unpack_image;

pub use error::{ConvertError, Result};
pub use image::{
    CONFIG_SIZE_LIMIT, ConvertProgress, ConvertReport, NoProgress, SOURCE_ANNOTATION, convert_image,
};
pub use image_error::ImageError;
pub use input::{LayerCompression, decompress};
pub use layer::{ConvertOptions, ConvertedLayer, DEFAULT_CHUNK_SIZE, convert_layer};
pub use relayout::{chunk_order, relayout_layer};
pub use relayout_image::{RelaidImage, relayout_image};
pub use unpack::{ChunkReader, unpack_layer};
pub use unpack_image::unpack_image;

use std::path::PathBuf;

use crate::ConvertError;

/// Why an image could not be converted, inspected or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Talking to the registry or layout failed.
    #[error(transparent)]
    Oci(#[from] lazy_oci::OciError),
    /// A layer could not be converted or unpacked.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The image's documents are inconsistent.
    #[error("malformed image {image}: {reason}")]
    Malformed {
        /// The image.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer media type this tool cannot read.
    #[error("image {image}: layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedLayer {
        /// The image.
        image: String,
        /// The layer.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// The source is already a lazy image.
    #[error("{image} is already a lazy image (annotation dev.lazyfs.format); nothing to convert")]
    AlreadyLazy {
        /// The image.
        image: String,
    },
    /// The image is not a lazy image.
    #[error("{image} is not a lazy image; convert it first: lazyctl convert {image} DEST")]
    NotLazy {
        /// The image.
        image: String,
    },
    /// A lazy layer's metadata is invalid.
    #[error("image {image}: layer {digest}: {source}")]
    Format {
        /// The image.
        image: String,
        /// The layer.
        digest: String,
        /// What the decoder found.
        source: lazy_format::FormatError,
    },
    /// Downloading a blob failed or it failed verification.
    #[error("downloading layer {digest}: {source}")]
    Download {
        /// The blob.
        digest: String,
        /// Underlying error (`InvalidData` for a digest mismatch).
        source: std::io::Error,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The destination directory of `unpack` is not usable.
    #[error("cannot unpack into {path}: {reason}")]
    Target {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

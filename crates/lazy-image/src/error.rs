use std::path::PathBuf;

/// Why a lazy image could not be read (or a prefetch record stored).
#[derive(Debug, thiserror::Error)]
pub enum LazyImageError {
    /// Talking to the registry or layout failed.
    #[error(transparent)]
    Oci(#[from] lazy_oci::OciError),
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
    /// The image is not a lazy image.
    #[error("{image} is not a lazy image; convert it first: lazyctl convert {image} DEST")]
    NotLazy {
        /// The image.
        image: String,
    },
    /// A lazy layer's metadata (or a prefetch record) is invalid.
    #[error("image {image}: layer {digest}: {source}")]
    Format {
        /// The image.
        image: String,
        /// The layer.
        digest: String,
        /// What the decoder found.
        source: lazy_format::FormatError,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

use lazy_image::LazyImageError;

use crate::ConvertError;

/// Why an image could not be converted or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the image (registry, layout, manifest, metadata) failed.
    #[error(transparent)]
    Read(#[from] LazyImageError),
    /// A layer could not be converted or unpacked.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The source is already a lazy image.
    #[error("{image} is already a lazy image (annotation dev.lazyfs.format); nothing to convert")]
    AlreadyLazy {
        /// The image.
        image: String,
    },
    /// Downloading a blob failed or it failed verification.
    #[error("downloading layer {digest}: {source}")]
    Download {
        /// The blob.
        digest: String,
        /// Underlying error (`InvalidData` for a digest mismatch).
        source: std::io::Error,
    },
    /// The destination directory of `unpack` is not usable.
    #[error("cannot unpack into {path}: {reason}")]
    Target {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        reason: &'static str,
    },
}

impl From<lazy_oci::OciError> for ImageError {
    fn from(e: lazy_oci::OciError) -> Self {
        Self::Read(LazyImageError::Oci(e))
    }
}

/// A local file operation's failure.
pub(crate) fn io_err(path: &std::path::Path, source: std::io::Error) -> ImageError {
    ImageError::Read(LazyImageError::Io {
        path: path.to_owned(),
        source,
    })
}

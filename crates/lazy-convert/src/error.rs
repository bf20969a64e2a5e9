use std::path::PathBuf;

/// Why a layer could not be converted or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Reading the layer stream failed (includes decompression errors and
    /// digest mismatches reported by the stream).
    #[error("reading layer {layer}: {source}")]
    Read {
        /// Which layer (digest or index).
        layer: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A tar entry that would escape the root or is otherwise unsafe.
    #[error("layer {layer}: unsafe entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// Which layer.
        layer: String,
        /// The entry's name as it appears in the tar.
        entry: String,
        /// What makes it unsafe.
        reason: String,
    },
    /// A tar entry this converter cannot represent.
    #[error("layer {layer}: unsupported entry {entry:?}: {reason}")]
    Unsupported {
        /// Which layer.
        layer: String,
        /// The entry's name.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Writing the converted blob failed.
    #[error("writing converted layer {layer}: {source}")]
    Write {
        /// Which layer.
        layer: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The lazy layer format refused the result or the input.
    #[error("layer {layer}: {source}")]
    Format {
        /// Which layer.
        layer: String,
        /// Underlying error.
        source: lazy_format::FormatError,
    },
    /// A filesystem operation of `unpack` failed.
    #[error("unpacking {path}: {source}")]
    Unpack {
        /// Target path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A lazy layer whose entries would unpack through a symlink or other
    /// non-directory, i.e. outside the directory tree.
    #[error("layer {layer}: entry {entry:?} lies beneath non-directory {ancestor:?}")]
    BeneathNonDirectory {
        /// Which layer.
        layer: String,
        /// The offending entry.
        entry: String,
        /// The ancestor that is not a directory.
        ancestor: String,
    },
}

impl ConvertError {
    /// A [`ConvertError::Read`] of `layer`, for `map_err`.
    pub(crate) fn read(layer: &str) -> impl Fn(std::io::Error) -> Self + Copy + '_ {
        move |source| Self::Read {
            layer: layer.to_owned(),
            source,
        }
    }

    /// A [`ConvertError::Write`] of `layer`, for `map_err`.
    pub(crate) fn write(layer: &str) -> impl Fn(std::io::Error) -> Self + Copy + '_ {
        move |source| Self::Write {
            layer: layer.to_owned(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

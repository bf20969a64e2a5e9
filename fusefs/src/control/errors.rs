//! The one place daemon-side failures become typed control errors: each
//! mapping is an exhaustive match, so a new failure must be classified.

use lazy_cache::CacheError;
use lazy_control::{ControlError, ErrorKind};
use lazy_image::LazyImageError;
use lazy_oci::OciError;

/// The kind of a registry or layout failure.
pub(crate) fn oci_kind(e: &OciError) -> ErrorKind {
    match e {
        OciError::InvalidReference { .. }
        | OciError::InvalidLocation { .. }
        | OciError::InvalidDigest { .. }
        | OciError::InvalidProxy { .. } => ErrorKind::InvalidRequest,
        OciError::Unreachable { .. }
        | OciError::StoreUnreachable { .. }
        | OciError::Transfer { .. } => ErrorKind::Unreachable,
        OciError::ManifestNotFound { .. }
        | OciError::BlobNotFound { .. }
        | OciError::LayoutTagNotFound { .. }
        | OciError::LayoutBlobNotFound { .. }
        | OciError::NoMatchingPlatform { .. } => ErrorKind::NotFound,
        OciError::Unauthorized { .. } | OciError::UnsupportedChallenge { .. } => {
            ErrorKind::Unauthorized
        }
        OciError::DigestMismatch { .. }
        | OciError::SizeMismatch { .. }
        | OciError::TooLarge { .. }
        | OciError::InvalidResponse { .. }
        | OciError::InvalidDocument { .. }
        | OciError::Layout { .. }
        | OciError::Store { .. } => ErrorKind::Corrupt,
        OciError::UnexpectedStatus { status, .. } => match status {
            404 => ErrorKind::NotFound,
            401 | 403 => ErrorKind::Unauthorized,
            408 | 429 | 500..=599 => ErrorKind::Unreachable,
            _ => ErrorKind::Internal,
        },
        // The registry cannot serve lazy images (no range GETs).
        OciError::RangeNotSupported { .. } => ErrorKind::Unreachable,
        OciError::UnsupportedMediaType { .. } => ErrorKind::NotLazy,
        OciError::DockerConfig { .. } | OciError::Io { .. } | OciError::HttpClient { .. } => {
            ErrorKind::Internal
        }
    }
}

/// A registry or layout failure as a control error.
pub(crate) fn oci_error(e: &OciError) -> ControlError {
    ControlError::new(oci_kind(e), e.to_string())
}

/// A failure reading a lazy image as a control error.
pub(crate) fn image_error(e: LazyImageError) -> ControlError {
    let kind = match &e {
        LazyImageError::Oci(oci) => oci_kind(oci),
        LazyImageError::Malformed { .. } | LazyImageError::Format { .. } => ErrorKind::Corrupt,
        LazyImageError::UnsupportedLayer { .. } | LazyImageError::NotLazy { .. } => {
            ErrorKind::NotLazy
        }
        LazyImageError::Io { .. } => ErrorKind::Internal,
    };
    ControlError::new(kind, e.to_string())
}

/// A cache failure as a control error.
pub(crate) fn cache_error(e: &CacheError) -> ControlError {
    let kind = match e {
        CacheError::Fetch { .. } | CacheError::Timeout { .. } => ErrorKind::Unreachable,
        CacheError::Verification { .. } => ErrorKind::Corrupt,
        CacheError::Store { .. } | CacheError::Index(_) => ErrorKind::Internal,
        CacheError::Abandoned(_) => ErrorKind::Busy,
    };
    ControlError::new(kind, e.to_string())
}

/// An image reference that does not parse.
pub(crate) fn invalid_reference(text: &str, e: impl std::fmt::Display) -> ControlError {
    ControlError::new(
        ErrorKind::InvalidRequest,
        format!("invalid image reference {text:?}: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_failures_keep_their_meaning() {
        let not_found = OciError::ManifestNotFound {
            reference: "localhost:5000/a:b".into(),
        };
        assert_eq!(oci_error(&not_found).kind, ErrorKind::NotFound);
        let status = |status| OciError::UnexpectedStatus {
            method: "GET".into(),
            url: "http://r/v2/".into(),
            status,
            body: String::new(),
        };
        assert_eq!(oci_kind(&status(403)), ErrorKind::Unauthorized);
        assert_eq!(oci_kind(&status(503)), ErrorKind::Unreachable);
        let not_lazy = LazyImageError::NotLazy {
            image: "r/a".into(),
        };
        let e = image_error(not_lazy);
        assert_eq!(e.kind, ErrorKind::NotLazy);
        assert!(e.message.contains("r/a"), "{e}");
    }
}

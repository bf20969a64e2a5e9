//! Typed control errors: a kind a program branches on, plus a message a
//! person acts on. The kind decides the exit code of the CLIs and the gRPC
//! status of a gRPC front end, through one table ([`ErrorKind::mapping`]).

use serde::{Deserialize, Serialize};

/// What went wrong, as a caller needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The image, tag, layer, blob or attachment does not exist.
    NotFound,
    /// The registry refused the credentials (or asked for some).
    Unauthorized,
    /// The image exists but is not a lazy image (convert it first).
    NotLazy,
    /// The registry (or another server) could not be reached or timed out.
    Unreachable,
    /// Data failed verification or does not decode: a digest mismatch,
    /// malformed metadata, a damaged cache file.
    Corrupt,
    /// The operation conflicts with one in progress (try again later).
    Busy,
    /// The request itself is wrong: a malformed reference, a bad option.
    InvalidRequest,
    /// A fault inside the daemon (I/O on its own files, a bug).
    Internal,
}

/// How one error kind is reported by each front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorMapping {
    /// Exit status of `lazyctl` (the BSD `sysexits.h` codes).
    pub exit_code: u8,
    /// gRPC status code (`google.rpc.Code`), for gRPC front ends.
    pub grpc_code: i32,
}

impl ErrorKind {
    /// Every kind, for exhaustive tests and docs.
    pub const ALL: [ErrorKind; 8] = [
        Self::NotFound,
        Self::Unauthorized,
        Self::NotLazy,
        Self::Unreachable,
        Self::Corrupt,
        Self::Busy,
        Self::InvalidRequest,
        Self::Internal,
    ];

    /// The one table from kinds to exit codes and gRPC codes.
    pub const fn mapping(self) -> ErrorMapping {
        // sysexits.h: 64 USAGE, 65 DATAERR, 66 NOINPUT, 69 UNAVAILABLE,
        // 70 SOFTWARE, 75 TEMPFAIL, 77 NOPERM. gRPC: 3 INVALID_ARGUMENT,
        // 5 NOT_FOUND, 7 PERMISSION_DENIED, 9 FAILED_PRECONDITION,
        // 10 ABORTED, 13 INTERNAL, 14 UNAVAILABLE, 15 DATA_LOSS.
        let (exit_code, grpc_code) = match self {
            Self::NotFound => (66, 5),
            Self::Unauthorized => (77, 7),
            Self::NotLazy => (65, 9),
            Self::Unreachable => (69, 14),
            Self::Corrupt => (65, 15),
            Self::Busy => (75, 10),
            Self::InvalidRequest => (64, 3),
            Self::Internal => (70, 13),
        };
        ErrorMapping {
            exit_code,
            grpc_code,
        }
    }

    /// A short name, as in the protocol (`not_found`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::NotLazy => "not_lazy",
            Self::Unreachable => "unreachable",
            Self::Corrupt => "corrupt",
            Self::Busy => "busy",
            Self::InvalidRequest => "invalid_request",
            Self::Internal => "internal",
        }
    }
}

/// A failed control operation: its kind and a message naming the image,
/// layer or path concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// What went wrong, for programs.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl ControlError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The same error with `context: ` before its message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_distinct_grpc_codes_and_sysexits() {
        let mut grpc = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let m = kind.mapping();
            assert!((64..=78).contains(&m.exit_code), "{kind:?}");
            assert!(grpc.insert(m.grpc_code), "{kind:?} shares its gRPC code");
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }

    #[test]
    fn context_keeps_the_kind() {
        let e = ControlError::new(ErrorKind::NotFound, "no tag x").context("attaching a:x");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.to_string(), "attaching a:x: no tag x");
    }
}

//! Content digests: validation of `sha256:<hex>` strings and hashing.
//!
//! Only sha256 is accepted. Digests arrive from registries and files we do not
//! trust and end up in URLs and file paths, so validation is strict: exactly
//! 64 lowercase hex digits, nothing else.

use sha2::{Digest as _, Sha256};

use crate::OciError;

/// The algorithm prefix of every digest this crate handles.
pub const SHA256_PREFIX: &str = "sha256:";

/// Checks that `digest` is `sha256:` followed by 64 lowercase hex digits and
/// returns the hex part.
pub fn validate_digest(digest: &str) -> Result<&str, OciError> {
    let invalid = |reason| OciError::InvalidDigest {
        digest: digest.to_owned(),
        reason,
    };
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(invalid("expected ALGORITHM:HEX"));
    };
    if algorithm != "sha256" {
        return Err(invalid("only sha256 digests are supported"));
    }
    if hex.len() != 64 {
        return Err(invalid("a sha256 digest has 64 hex digits"));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("digest must be lowercase hex"));
    }
    Ok(hex)
}

/// The `sha256:<hex>` digest of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(Sha256::digest(data)))
}

/// Fails with [`OciError::DigestMismatch`] unless `data` hashes to `expected`.
pub(crate) fn verify_bytes(what: &str, expected: &str, data: &[u8]) -> Result<(), OciError> {
    let actual = sha256_digest(data);
    if actual != expected {
        return Err(OciError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// An incremental sha256 that yields `sha256:<hex>`.
#[derive(Default, Clone)]
pub(crate) struct DigestHasher {
    inner: Sha256,
}

impl DigestHasher {
    /// Adds `data` to the hash.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The digest of everything added so far.
    pub(crate) fn finish(self) -> String {
        format!("{SHA256_PREFIX}{}", hex::encode(self.inner.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_sha256() {
        assert_eq!(validate_digest(EMPTY).unwrap(), &EMPTY[7..]);
    }

    #[test]
    fn rejects_bad_digests() {
        let cases = [
            ("", "expected ALGORITHM:HEX"),
            ("e3b0c442", "expected ALGORITHM:HEX"),
            ("sha512:abcd", "only sha256"),
            ("sha256:abcd", "64 hex digits"),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "lowercase hex",
            ),
            ("sha256:../../../../etc/passwd", "64 hex digits"),
            (
                "sha256:../a../a../a../a../a../a../a../a../a../a../a../a../a../a../a../a",
                "lowercase hex",
            ),
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
                "lowercase hex",
            ),
        ];
        for (input, reason) in cases {
            let err = validate_digest(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn hashes() {
        assert_eq!(sha256_digest(b""), EMPTY);
        let mut h = DigestHasher::default();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), sha256_digest(b"abc"));
        assert!(verify_bytes("x", EMPTY, b"").is_ok());
        let err = verify_bytes("blob x", EMPTY, b"a").unwrap_err().to_string();
        assert!(err.contains("blob x") && err.contains(EMPTY), "{err}");
    }
}

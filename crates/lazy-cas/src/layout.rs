//! Where things are in a store, relative to its root (a directory, or a URL).

use lazy_oci::{OciError, validate_digest};

/// The marker file at the root of a store, and its content.
pub const MARKER: &str = "lazyfs-store";
/// What the marker holds: format name and version.
pub const MARKER_CONTENT: &str = "lazyfs-http-cas 1\n";

/// `data/ab/cdef…` for object `sha256:abcdef…`.
pub fn object_path(digest: &str) -> Result<String, OciError> {
    Ok(format!("data/{}", fan_out(digest)?))
}

/// `pieces/ab/cdef…` for the piece table of layer blob `sha256:abcdef…`.
pub fn pieces_path(layer_digest: &str) -> Result<String, OciError> {
    Ok(format!("pieces/{}", fan_out(layer_digest)?))
}

/// `tags/<repository>/<tag>`. Both come from a parsed reference, whose
/// grammar admits no `..` component.
pub fn tag_path(repository: &str, tag: &str) -> String {
    format!("tags/{repository}/{tag}")
}

fn fan_out(digest: &str) -> Result<String, OciError> {
    let hex = validate_digest(digest)?;
    Ok(format!("{}/{}", &hex[..2], &hex[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let d = format!("sha256:ab{}", "0".repeat(62));
        assert_eq!(
            object_path(&d).unwrap(),
            format!("data/ab/{}", "0".repeat(62))
        );
        assert_eq!(
            pieces_path(&d).unwrap(),
            format!("pieces/ab/{}", "0".repeat(62))
        );
        assert!(object_path("sha256:../../etc/passwd").is_err());
        assert!(object_path("md5:00").is_err());
        assert_eq!(tag_path("lib/r-base", "4.3"), "tags/lib/r-base/4.3");
    }
}

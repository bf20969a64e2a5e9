//! Entry paths: relative, `/`-separated byte strings, validated on the way in.

use crate::FormatError;

/// Longest path a layer may hold (Linux `PATH_MAX`).
const MAX_PATH: usize = 4096;
/// Longest single name (Linux `NAME_MAX`).
const MAX_NAME: usize = 255;

/// A validated entry path: relative, no empty, `.` or `..` components, no NUL.
/// The layer's root directory is the empty path. Names are raw bytes, so
/// non-UTF-8 names survive unchanged.
pub type EntryPath = Vec<u8>;

/// Checks the rules of [`EntryPath`]; `Err` names the broken rule.
pub(crate) fn check_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > MAX_PATH {
        return Err("path longer than 4096 bytes");
    }
    if path.contains(&0) {
        return Err("path contains a NUL byte");
    }
    if path[0] == b'/' {
        return Err("absolute path");
    }
    for name in path.split(|b| *b == b'/') {
        match name {
            b"" => return Err("empty path component"),
            b"." | b".." => return Err("`.` or `..` path component"),
            n if n.len() > MAX_NAME => return Err("name longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// The parent of a non-root path (the root's parent is `None`).
pub fn parent_of(path: &[u8]) -> Option<&[u8]> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    })
}

pub(crate) fn invalid(path: &[u8], reason: &'static str) -> FormatError {
    FormatError::InvalidEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        assert!(check_path(b"").is_ok());
        assert!(check_path(b"usr/bin/env").is_ok());
        assert!(check_path(b"caf\xe9").is_ok());
        for bad in [&b"/etc"[..], b"a//b", b"a/../b", b"./a", b"a/", b"a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of(b""), None);
        assert_eq!(parent_of(b"etc"), Some(&b""[..]));
        assert_eq!(parent_of(b"etc/passwd"), Some(&b"etc"[..]));
    }
}

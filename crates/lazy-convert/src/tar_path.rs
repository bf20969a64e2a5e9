//! Normalizes tar entry names into layer paths, refusing traversal.

/// What a tar name means for the layer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TarName {
    /// An ordinary entry at this normalized path (`""` is the root).
    Entry(Vec<u8>),
    /// `.wh.NAME`: delete `NAME` (this path) from lower layers.
    Whiteout(Vec<u8>),
    /// `DIR/.wh..wh..opq`: `DIR` hides its lower-layer contents.
    Opaque(Vec<u8>),
    /// Other `.wh..wh.` metadata (aufs hardlink dirs): carries nothing for us.
    AufsMeta,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Normalizes a tar name: drops `./` and empty components and a trailing `/`;
/// refuses absolute names and `..`.
pub(crate) fn normalize(name: &[u8]) -> Result<Vec<u8>, &'static str> {
    if name.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if name.contains(&0) {
        return Err("NUL byte in name");
    }
    let mut out = Vec::with_capacity(name.len());
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("`..` path component"),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Ok(out)
}

/// Classifies a tar name after normalizing it.
pub(crate) fn classify(name: &[u8]) -> Result<TarName, &'static str> {
    let path = normalize(name)?;
    let (dir, base) = match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], &path[..]),
    };
    if base == OPAQUE_MARKER {
        return Ok(TarName::Opaque(dir.to_vec()));
    }
    if base.starts_with(b".wh..wh.") {
        return Ok(TarName::AufsMeta);
    }
    if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() {
            return Err("whiteout without a name");
        }
        let mut target = dir.to_vec();
        if !target.is_empty() {
            target.push(b'/');
        }
        target.extend_from_slice(hidden);
        return Ok(TarName::Whiteout(target));
    }
    Ok(TarName::Entry(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses() {
        assert_eq!(normalize(b"./usr/bin/").unwrap(), b"usr/bin");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a//./b").unwrap(), b"a/b");
        assert!(normalize(b"/etc/passwd").is_err());
        assert!(normalize(b"a/../../etc").is_err());
        assert!(normalize(b"..").is_err());
    }

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(
            classify(b"etc/.wh.motd").unwrap(),
            TarName::Whiteout(b"etc/motd".to_vec())
        );
        assert_eq!(
            classify(b".wh.tmp").unwrap(),
            TarName::Whiteout(b"tmp".to_vec())
        );
        assert_eq!(
            classify(b"./var/.wh..wh..opq").unwrap(),
            TarName::Opaque(b"var".to_vec())
        );
        assert_eq!(
            classify(b".wh..wh.plnk/1").unwrap(),
            TarName::Entry(b".wh..wh.plnk/1".to_vec())
        );
        assert_eq!(classify(b".wh..wh.aufs").unwrap(), TarName::AufsMeta);
        assert_eq!(classify(b"a/b").unwrap(), TarName::Entry(b"a/b".to_vec()));
    }
}

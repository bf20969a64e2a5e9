//! Where an image lives: a registry reference or an OCI image-layout
//! directory written `oci:DIR[:TAG]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::reference::{DEFAULT_TAG, is_valid_tag};
use crate::{OciError, Reference};

const LAYOUT_PREFIX: &str = "oci:";

/// A registry reference, or an OCI image-layout directory with a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLocation {
    /// An image in a registry.
    Registry(Reference),
    /// An image in an OCI image-layout directory, selected by its
    /// `org.opencontainers.image.ref.name` annotation.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`latest` when not given).
        tag: String,
    },
}

impl FromStr for ImageLocation {
    type Err = OciError;

    /// `oci:DIR:TAG`, `oci:DIR` (tag `latest`) or a registry reference.
    ///
    /// DIR may contain `:`; the text after the last `:` is taken as the tag
    /// only if it is a valid tag (so `oci:/a:b/c` is the directory `/a:b/c`).
    fn from_str(input: &str) -> Result<Self, OciError> {
        let Some(rest) = input.strip_prefix(LAYOUT_PREFIX) else {
            return Ok(Self::Registry(input.parse()?));
        };
        let invalid = |reason| OciError::InvalidLocation {
            input: input.to_owned(),
            reason,
        };
        if rest.ends_with(':') {
            return Err(invalid("empty tag after ':'"));
        }
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !dir.is_empty() && is_valid_tag(tag) => (dir, tag),
            _ => (rest, DEFAULT_TAG),
        };
        if dir.is_empty() {
            return Err(invalid("empty directory in oci:DIR[:TAG]"));
        }
        Ok(Self::Layout {
            dir: PathBuf::from(dir),
            tag: tag.to_owned(),
        })
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(reference) => reference.fmt(f),
            Self::Layout { dir, tag } => write!(f, "{LAYOUT_PREFIX}{}:{tag}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &str, tag: &str) -> ImageLocation {
        ImageLocation::Layout {
            dir: dir.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn parses_layouts() {
        let cases = [
            ("oci:/tmp/img:v1", layout("/tmp/img", "v1")),
            ("oci:/tmp/img", layout("/tmp/img", "latest")),
            ("oci:img", layout("img", "latest")),
            ("oci:rel/dir:1.0", layout("rel/dir", "1.0")),
            ("oci:/a:b/c", layout("/a:b/c", "latest")),
            ("oci:/a:b/c:t", layout("/a:b/c", "t")),
            ("oci:/a:b:c", layout("/a:b", "c")),
            ("oci::tag", layout(":tag", "latest")),
        ];
        for (input, want) in cases {
            let got: ImageLocation = input.parse().unwrap();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn parses_registry_references() {
        let got: ImageLocation = "localhost:5000/a:b".parse().unwrap();
        let ImageLocation::Registry(r) = &got else {
            panic!("{got:?}")
        };
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(got.to_string(), "localhost:5000/a:b");
        let err = "Bad/Ref".parse::<ImageLocation>().unwrap_err();
        assert!(matches!(err, OciError::InvalidReference { .. }), "{err}");
    }

    #[test]
    fn rejects_bad_layouts() {
        for (input, reason) in [("oci:", "empty directory"), ("oci:/x:", "empty tag")] {
            let err = input.parse::<ImageLocation>().unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for input in ["oci:/tmp/img:v1", "oci:/a:b/c:latest"] {
            let parsed: ImageLocation = input.parse().unwrap();
            assert_eq!(parsed.to_string(), input);
        }
    }
}

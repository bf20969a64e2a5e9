//! Manifest documents: media types, telling manifests from indexes, and
//! picking the linux/amd64 entry of an index. Shared by the registry client
//! and OCI layouts.

use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, Os};

use crate::OciError;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header for manifest requests: every type this crate handles.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or index accepted, in bytes.
pub const MANIFEST_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// How many nested indexes are followed before giving up.
pub(crate) const MAX_INDEX_DEPTH: usize = 4;

/// A resolved image manifest with the exact bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The parsed manifest (Docker schema 2 manifests parse into the same type).
    pub manifest: ImageManifest,
    /// `sha256:` digest of `bytes`.
    pub digest: String,
    /// The manifest's media type (OCI or Docker schema 2).
    pub media_type: String,
    /// The raw manifest bytes, as stored.
    pub bytes: Vec<u8>,
}

impl FetchedManifest {
    /// A single-platform manifest from its bytes, which hash to `digest`
    /// (checked); an index is refused. `what` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, digest: &str, what: &str) -> Result<Self, OciError> {
        crate::digest::verify_bytes(what, digest, &bytes)?;
        let (kind, media_type) = classify(None, &bytes, what)?;
        if kind == DocumentKind::Index {
            return Err(OciError::UnsupportedMediaType {
                reference: what.to_owned(),
                media_type,
            });
        }
        Ok(Self {
            manifest: parse_manifest(&bytes, what)?,
            digest: digest.to_owned(),
            media_type,
            bytes,
        })
    }
}

/// Whether a document is a single-platform manifest or an index of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentKind {
    Manifest,
    Index,
}

/// Decides what `bytes` are, from the `Content-Type` (or descriptor media
/// type) when it is specific, else from the document's own `mediaType` field
/// or shape. Returns the kind and the effective media type.
pub(crate) fn classify(
    declared: Option<&str>,
    bytes: &[u8],
    what: &str,
) -> Result<(DocumentKind, String), OciError> {
    let declared = declared.map(|t| t.split(';').next().unwrap_or(t).trim());
    let generic = |t: &str| {
        matches!(
            t,
            "" | "application/json" | "text/plain" | "application/octet-stream"
        )
    };
    let media_type = match declared {
        Some(t) if !generic(t) => t.to_owned(),
        _ => sniff_media_type(bytes, what)?,
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => DocumentKind::Manifest,
        OCI_INDEX | DOCKER_MANIFEST_LIST => DocumentKind::Index,
        _ => {
            return Err(OciError::UnsupportedMediaType {
                reference: what.to_owned(),
                media_type,
            });
        }
    };
    Ok((kind, media_type))
}

fn sniff_media_type(bytes: &[u8], what: &str) -> Result<String, OciError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let shape: Shape =
        serde_json::from_slice(bytes).map_err(|source| OciError::InvalidDocument {
            kind: "manifest",
            what: what.to_owned(),
            source,
        })?;
    Ok(
        match (shape.media_type, shape.schema_version, shape.manifests) {
            (Some(t), _, _) => t,
            (None, Some(1), _) => "application/vnd.docker.distribution.manifest.v1+json".to_owned(),
            (None, _, Some(_)) => OCI_INDEX.to_owned(),
            (None, _, None) => OCI_MANIFEST.to_owned(),
        },
    )
}

/// Parses an image manifest.
pub(crate) fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest, OciError> {
    serde_json::from_slice(bytes).map_err(|source| OciError::InvalidDocument {
        kind: "manifest",
        what: what.to_owned(),
        source,
    })
}

/// Parses an image index (or Docker manifest list).
pub(crate) fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex, OciError> {
    serde_json::from_slice(bytes).map_err(|source| OciError::InvalidDocument {
        kind: "image index",
        what: what.to_owned(),
        source,
    })
}

/// The linux/amd64 entry of an index (variant ignored; the first if several).
pub(crate) fn select_linux_amd64(bytes: &[u8], what: &str) -> Result<Descriptor, OciError> {
    let index = parse_index(bytes, what)?;
    let found = index.manifests().iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
    });
    match found {
        Some(descriptor) => Ok(descriptor.clone()),
        None => Err(OciError::NoMatchingPlatform {
            reference: what.to_owned(),
            available: available_platforms(&index),
        }),
    }
}

fn available_platforms(index: &ImageIndex) -> String {
    let list: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| match d.platform() {
            Some(p) => match p.variant() {
                Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                None => format!("{}/{}", p.os(), p.architecture()),
            },
            None => "(no platform)".to_owned(),
        })
        .collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn index(entries: &[(&str, &str, Option<&str>, &str)]) -> Vec<u8> {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(os, arch, variant, digest)| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 10, "platform": platform})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn selects_amd64_ignoring_variant() {
        let bytes = index(&[
            ("linux", "arm64", Some("v8"), D1),
            ("linux", "amd64", Some("v3"), D2),
        ]);
        let d = select_linux_amd64(&bytes, "x").unwrap();
        assert_eq!(d.digest().to_string(), D2);
    }

    #[test]
    fn no_amd64_lists_platforms() {
        let bytes = index(&[
            ("linux", "arm64", Some("v8"), D1),
            ("windows", "amd64", None, D2),
        ]);
        let err = select_linux_amd64(&bytes, "reg/x:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reg/x:1") && err.contains("linux/arm64/v8, windows/amd64"),
            "{err}"
        );
    }

    #[test]
    fn classifies_by_header_then_body() {
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let cases: [(Option<&str>, &[u8], DocumentKind, &str); 5] = [
            (
                Some(DOCKER_MANIFEST),
                manifest,
                DocumentKind::Manifest,
                DOCKER_MANIFEST,
            ),
            (
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}",
                DocumentKind::Index,
                OCI_INDEX,
            ),
            (
                Some("application/json"),
                manifest,
                DocumentKind::Manifest,
                OCI_MANIFEST,
            ),
            (
                None,
                br#"{"schemaVersion":2,"manifests":[]}"#,
                DocumentKind::Index,
                OCI_INDEX,
            ),
            (
                None,
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#,
                DocumentKind::Index,
                DOCKER_MANIFEST_LIST,
            ),
        ];
        for (declared, bytes, kind, media_type) in cases {
            assert_eq!(
                classify(declared, bytes, "x").unwrap(),
                (kind, media_type.to_owned())
            );
        }
    }

    #[test]
    fn rejects_unsupported_types() {
        for (declared, bytes) in [
            (
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                &b"{}"[..],
            ),
            (None, br#"{"schemaVersion":1,"fsLayers":[]}"#),
            (Some("application/vnd.lazyfs.layer.v1"), b"{}"),
        ] {
            let err = classify(declared, bytes, "reg/x:1").unwrap_err();
            assert!(
                matches!(err, OciError::UnsupportedMediaType { .. }),
                "{err}"
            );
        }
        let err = classify(None, b"not json", "reg/x:1").unwrap_err();
        assert!(matches!(err, OciError::InvalidDocument { .. }), "{err}");
    }

    #[test]
    fn docker_schema2_parses_with_unknown_media_types() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"{D1}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":"{D2}"}},
                      {{"mediaType":"application/vnd.lazyfs.layer.v1","size":9,"digest":"{D2}"}}]}}"#
        );
        let m = parse_manifest(json.as_bytes(), "x").unwrap();
        assert_eq!(m.layers().len(), 2);
        assert_eq!(
            m.layers()[0].media_type().to_string(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(
            m.layers()[1].media_type().to_string(),
            "application/vnd.lazyfs.layer.v1"
        );
        assert_eq!(m.config().size(), 7);
    }
}

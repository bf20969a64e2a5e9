use super::*;
use crate::manifest::{DOCKER_MANIFEST_LIST, OCI_MANIFEST};

fn manifest_json(config: &str, config_size: usize, layer: &str, layer_size: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.lazyfs.layer.v1", "digest": layer, "size": layer_size}],
    }))
    .unwrap()
}

fn sample_manifest(layout: &OciLayout, layer_data: &[u8]) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = layout.write_blob_bytes(config).unwrap();
    let layer_digest = layout.write_blob_bytes(layer_data).unwrap();
    manifest_json(
        &config_digest,
        config.len(),
        &layer_digest,
        layer_data.len(),
    )
}

#[test]
fn round_trip_with_retag() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("img");
    let layout = OciLayout::create(&root).unwrap();
    assert!(root.join("oci-layout").is_file() && root.join("index.json").is_file());

    let first = sample_manifest(&layout, b"layer one");
    let d1 = layout.put_manifest("v1", OCI_MANIFEST, &first).unwrap();
    let second = sample_manifest(&layout, b"layer two");
    let d2 = layout.put_manifest("v1", OCI_MANIFEST, &second).unwrap();
    let d3 = layout.put_manifest("other", OCI_MANIFEST, &first).unwrap();
    assert_ne!(d1, d2);
    assert_eq!(d1, d3);

    let reopened = OciLayout::open(&root).unwrap();
    let got = reopened.resolve("v1").unwrap();
    assert_eq!(got.digest, d2);
    assert_eq!(got.bytes, second);
    assert_eq!(got.media_type, OCI_MANIFEST);
    let layer = &got.manifest.layers()[0];
    assert_eq!(
        layer.media_type().to_string(),
        "application/vnd.lazyfs.layer.v1"
    );
    let layer_bytes = reopened.read_blob(layer.digest().as_ref(), 100).unwrap();
    assert_eq!(layer_bytes, b"layer two");
    assert_eq!(reopened.resolve("other").unwrap().digest, d1);

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");

    // create() on an existing layout keeps its content.
    let again = OciLayout::create(&root).unwrap();
    assert_eq!(again.resolve("v1").unwrap().digest, d2);

    let err = reopened.resolve("missing").unwrap_err();
    assert!(matches!(err, OciError::LayoutTagNotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"missing\""), "{err}");
}

#[test]
fn nested_index_resolves_to_amd64() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let amd64 = sample_manifest(&layout, b"amd64 layer");
    let arm64 = sample_manifest(&layout, b"arm64 layer");
    let amd64_digest = layout.write_blob_bytes(&amd64).unwrap();
    let arm64_digest = layout.write_blob_bytes(&arm64).unwrap();
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm64_digest, "size": arm64.len(), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd64_digest, "size": amd64.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    layout
        .put_manifest("multi", DOCKER_MANIFEST_LIST, &list)
        .unwrap();
    let got = layout.resolve("multi").unwrap();
    assert_eq!(got.digest, amd64_digest);
    assert_eq!(got.bytes, amd64);
}

#[test]
fn detects_corruption_and_bad_digests() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let manifest = sample_manifest(&layout, b"data");
    let digest = layout.put_manifest("t", OCI_MANIFEST, &manifest).unwrap();
    let path = layout.blob_path(&digest).unwrap();
    assert!(path.ends_with(format!("blobs/sha256/{}", &digest[7..])));
    std::fs::write(&path, b"{\"tampered\":true}").unwrap();
    let err = layout.resolve("t").unwrap_err();
    assert!(
        matches!(
            err,
            OciError::SizeMismatch { .. } | OciError::DigestMismatch { .. }
        ),
        "{err}"
    );
    let err = layout.read_blob(&digest, 1 << 20).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    let err = layout.read_blob(&digest, 3).unwrap_err();
    assert!(matches!(err, OciError::TooLarge { .. }), "{err}");

    assert!(layout.blob_path("sha256:../../etc/passwd").is_err());
    assert!(!layout.has_blob("sha256:../../etc/passwd"));
    let absent = sha256_digest(b"absent");
    assert!(!layout.has_blob(&absent));
    let err = layout.read_blob(&absent, 10).unwrap_err();
    assert!(matches!(err, OciError::LayoutBlobNotFound { .. }), "{err}");
    assert!(
        layout
            .put_manifest("bad tag", OCI_MANIFEST, &manifest)
            .is_err()
    );
}

#[test]
fn import_moves_file_and_skips_present() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&dir.path().join("l")).unwrap();
    let source = dir.path().join("blob.tmp");
    std::fs::write(&source, b"imported").unwrap();
    let digest = sha256_digest(b"imported");
    layout.import_blob_file(&digest, &source).unwrap();
    assert!(layout.has_blob(&digest));
    assert!(!source.exists(), "same file system: renamed");
    assert_eq!(layout.read_blob(&digest, 100).unwrap(), b"imported");

    std::fs::write(&source, b"ignored").unwrap();
    layout.import_blob_file(&digest, &source).unwrap();
    assert!(source.exists(), "present blob: source untouched");
    assert_eq!(layout.read_blob(&digest, 100).unwrap(), b"imported");
}

#[test]
fn open_rejects_non_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let err = OciLayout::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no oci-layout file"), "{err}");
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let err = OciLayout::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("unsupported imageLayoutVersion"),
        "{err}"
    );
}

//! `lazy-oci`'s registry client against the real Debian `docker-registry`:
//! pushing and pulling blobs and manifests.

mod oci_support;

use std::io::Write as _;
use std::path::Path;

use lazy_oci::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, OciError, PushOutcome,
    sha256_digest,
};
use oci_support::{Fixture, LAZY_LAYER, descriptor, json, pseudo_random, push_image_parts};
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn check_version_and_small_blob_push_pull() {
    let fx = Fixture::new();
    fx.client.check_version(&fx.registry.host()).await.unwrap();
    let r = fx.reference("small/blob:t");
    let data = pseudo_random(10_000, 1);
    let digest = sha256_digest(&data);

    assert_eq!(fx.client.blob_exists(&r, &digest).await.unwrap(), None);
    let outcome = fx
        .client
        .push_blob_bytes(&r, &digest, data.clone())
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        std::fs::read(fx.registry.blob_data_path(&digest)).unwrap(),
        data
    );
    assert_eq!(
        fx.client.blob_exists(&r, &digest).await.unwrap(),
        Some(10_000)
    );
    let again = fx
        .client
        .push_blob_bytes(&r, &digest, data.clone())
        .await
        .unwrap();
    assert_eq!(again, PushOutcome::AlreadyPresent);
    assert_eq!(
        fx.client.fetch_blob(&r, &digest, 10_000).await.unwrap(),
        data
    );

    let err = fx.client.fetch_blob(&r, &digest, 9_999).await.unwrap_err();
    assert!(
        matches!(err, OciError::TooLarge { limit: 9_999, .. }),
        "{err}"
    );
    let wrong = sha256_digest(b"something else");
    let err = fx
        .client
        .push_blob_bytes(&r, &wrong, data.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");

    // A small file goes up in one PUT as well.
    let path = fx.scratch.path().join("small.bin");
    let file_data = pseudo_random(100_000, 2);
    std::fs::write(&path, &file_data).unwrap();
    let file_digest = sha256_digest(&file_data);
    let outcome = fx
        .client
        .push_blob_file(&r, &file_digest, &path)
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        fx.client
            .fetch_blob(&r, &file_digest, 1 << 20)
            .await
            .unwrap(),
        file_data
    );
    let log = fx.registry.log();
    assert!(
        !log.contains("\"PATCH "),
        "small uploads are monolithic:\n{log}"
    );
    assert_eq!(
        log.matches("\"PUT /v2/small/blob/blobs/uploads/").count(),
        2,
        "{log}"
    );
}

/// Writes `len` pseudo-random bytes to `path` and returns their digest.
fn write_big_file(path: &Path, len: usize) -> (String, Vec<u8>) {
    let data = pseudo_random(len, 7);
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&data).unwrap();
    (sha256_digest(&data), data)
}

#[tokio::test]
async fn big_file_chunked_push_stream_and_ranges() {
    let fx = Fixture::new();
    let r = fx.reference("big/blob:t");
    let path = fx.scratch.path().join("big.bin");
    let len = 40 * 1024 * 1024 + 12_345;
    let (digest, data) = write_big_file(&path, len);
    let size = u64::try_from(len).unwrap();

    let outcome = fx.client.push_blob_file(&r, &digest, &path).await.unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        fx.client.blob_exists(&r, &digest).await.unwrap(),
        Some(size)
    );
    let log = fx.registry.log();
    let patches = log
        .lines()
        .filter(|l| l.contains("\"PATCH /v2/big/blob/blobs/uploads/"))
        .count();
    assert_eq!(patches, 3, "40 MiB in 16 MiB chunks:\n{log}");
    let again = fx.client.push_blob_file(&r, &digest, &path).await.unwrap();
    assert_eq!(again, PushOutcome::AlreadyPresent);

    let mut stream = fx.client.open_blob(&r, &digest, size).await.unwrap();
    let mut streamed = Vec::new();
    stream.read_to_end(&mut streamed).await.unwrap();
    assert!(
        streamed == data,
        "streamed blob differs from the pushed file"
    );

    for (start, end) in [
        (0, 1),
        (0, 4096),
        (16 * 1024 * 1024 - 10, 16 * 1024 * 1024 + 10),
        (size - 100, size),
    ] {
        let got = fx.client.read_range(&r, &digest, start..end).await.unwrap();
        let (s, e) = (
            usize::try_from(start).unwrap(),
            usize::try_from(end).unwrap(),
        );
        assert_eq!(got.len(), e - s);
        assert!(got == data[s..e], "range {start}..{end} differs");
    }
    assert!(
        fx.client
            .read_range(&r, &digest, 5..5)
            .await
            .unwrap()
            .is_empty()
    );
    let err = fx
        .client
        .read_range(&r, &digest, size..size + 10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OciError::UnexpectedStatus { status: 416, .. }),
        "{err}"
    );

    // open_blob refuses a size that does not match what the registry serves.
    let err = fx
        .client
        .open_blob(&r, &digest, size - 1)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::SizeMismatch { .. }), "{err}");
}

#[tokio::test]
async fn oci_manifest_with_lazy_layer_by_tag_and_digest() {
    let fx = Fixture::new();
    let r = fx.reference("lazy/image:v1");
    let manifest = push_image_parts(&fx, &r, LAZY_LAYER, 3).await;

    let digest = fx
        .client
        .put_manifest(&r, OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(digest, sha256_digest(&manifest));
    let by_tag = fx.client.fetch_manifest(&r).await.unwrap();
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.bytes, manifest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(
        by_tag.manifest.layers()[0].media_type().to_string(),
        LAZY_LAYER
    );
    let annotations = by_tag.manifest.annotations().clone().unwrap();
    assert_eq!(annotations["dev.lazyfs.format"], "1");

    let by_digest = fx
        .client
        .fetch_manifest(&r.with_digest(&digest))
        .await
        .unwrap();
    assert_eq!(by_digest.bytes, manifest);

    // Pushing by digest works too, and a wrong digest is caught before sending.
    let untagged = fx.reference("lazy/image").with_digest(&digest);
    assert_eq!(
        fx.client
            .put_manifest(&untagged, OCI_MANIFEST, manifest.clone())
            .await
            .unwrap(),
        digest
    );
    let bogus = untagged.with_digest(&sha256_digest(b"x"));
    let err = fx
        .client
        .put_manifest(&bogus, OCI_MANIFEST, manifest)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn oci_manifest_with_artifact_type_and_custom_config_type() {
    let fx = Fixture::new();
    let r = fx.reference("lazy/artifact:v1");
    let config = br#"{"lazyfs":1}"#.to_vec();
    let layer = pseudo_random(1000, 4);
    for blob in [&config, &layer] {
        fx.client
            .push_blob_bytes(&r, &sha256_digest(blob), blob.clone())
            .await
            .unwrap();
    }
    let manifest = json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.lazyfs.image.v1",
        "config": descriptor("application/vnd.lazyfs.config.v1+json", &config),
        "layers": [descriptor(LAZY_LAYER, &layer)],
    }));
    let digest = fx
        .client
        .put_manifest(&r, OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    let fetched = fx.client.fetch_manifest(&r).await.unwrap();
    assert_eq!(fetched.digest, digest);
    assert_eq!(
        fetched.bytes, manifest,
        "registry must store the manifest bytes unchanged"
    );
    assert_eq!(
        fetched
            .manifest
            .artifact_type()
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("application/vnd.lazyfs.image.v1")
    );
    assert_eq!(
        fetched.manifest.config().media_type().to_string(),
        "application/vnd.lazyfs.config.v1+json"
    );
}

#[tokio::test]
async fn docker_schema2_manifest() {
    let fx = Fixture::new();
    let r = fx.reference("docker/image:s2");
    let config = json(serde_json::json!({"architecture": "amd64", "os": "linux"}));
    let layer = pseudo_random(2048, 5);
    for blob in [&config, &layer] {
        fx.client
            .push_blob_bytes(&r, &sha256_digest(blob), blob.clone())
            .await
            .unwrap();
    }
    let manifest = json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer)],
    }));
    let digest = fx
        .client
        .put_manifest(&r, DOCKER_MANIFEST, manifest.clone())
        .await
        .unwrap();
    let fetched = fx.client.fetch_manifest(&r).await.unwrap();
    assert_eq!(fetched.digest, digest);
    assert_eq!(fetched.media_type, DOCKER_MANIFEST);
    assert_eq!(
        fetched.manifest.config().digest().to_string(),
        sha256_digest(&config)
    );
    assert_eq!(
        fetched.manifest.layers()[0].media_type().to_string(),
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let config_bytes = fx
        .client
        .fetch_blob(&r, &sha256_digest(&config), 1 << 20)
        .await
        .unwrap();
    assert_eq!(config_bytes, config);
}

fn platform_entry(
    media_type: &str,
    manifest: &[u8],
    arch: &str,
    variant: Option<&str>,
) -> serde_json::Value {
    let mut entry = descriptor(media_type, manifest);
    entry["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
    if let Some(variant) = variant {
        entry["platform"]["variant"] = variant.into();
    }
    entry
}

#[tokio::test]
async fn image_index_and_manifest_list_resolve_to_amd64() {
    let fx = Fixture::new();
    let r = fx.reference("multi/arch:latest");
    let arm = push_image_parts(&fx, &r, "application/vnd.oci.image.layer.v1.tar+gzip", 10).await;
    let amd = push_image_parts(&fx, &r, "application/vnd.oci.image.layer.v1.tar+gzip", 11).await;
    let arm_digest = fx
        .client
        .put_manifest(
            &r.with_digest(&sha256_digest(&arm)),
            OCI_MANIFEST,
            arm.clone(),
        )
        .await
        .unwrap();
    let amd_digest = fx
        .client
        .put_manifest(
            &r.with_digest(&sha256_digest(&amd)),
            OCI_MANIFEST,
            amd.clone(),
        )
        .await
        .unwrap();

    for (tag, media_type) in [
        ("oci-index", OCI_INDEX),
        ("docker-list", DOCKER_MANIFEST_LIST),
    ] {
        let index = json(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                platform_entry(OCI_MANIFEST, &arm, "arm64", Some("v8")),
                platform_entry(OCI_MANIFEST, &amd, "amd64", Some("v3")),
            ],
        }));
        let tagged = r.with_tag(tag);
        fx.client
            .put_manifest(&tagged, media_type, index)
            .await
            .unwrap();
        let fetched = fx.client.fetch_manifest(&tagged).await.unwrap();
        assert_eq!(fetched.digest, amd_digest, "{tag}");
        assert_eq!(fetched.bytes, amd, "{tag}");
        assert_ne!(fetched.digest, arm_digest);
    }

    let arm_only = json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [platform_entry(OCI_MANIFEST, &arm, "arm64", None)],
    }));
    let tagged = r.with_tag("arm-only");
    fx.client
        .put_manifest(&tagged, OCI_INDEX, arm_only)
        .await
        .unwrap();
    let err = fx.client.fetch_manifest(&tagged).await.unwrap_err();
    assert!(matches!(err, OciError::NoMatchingPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");
}

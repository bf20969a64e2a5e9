//! Pull-through mirrors against real registries: reads go to the mirror
//! first, fall back to the origin when the mirror lacks the content or is
//! down, and pushes never touch the mirror.

mod oci_support;

use std::collections::HashMap;

use lazy_oci::{OCI_MANIFEST, RegistryClient, sha256_digest};
use oci_support::{Fixture, LAZY_LAYER, push_image_parts};

#[tokio::test]
async fn reads_prefer_the_mirror_and_fall_back_to_the_origin() {
    // The origin holds image "app:v1"; the mirror holds a copy of it.
    let origin = Fixture::new();
    let mut mirror = Fixture::new();
    let at_origin = origin.reference("app:v1");
    let manifest = push_image_parts(&origin, &at_origin, LAZY_LAYER, 7).await;
    origin
        .client
        .put_manifest(&at_origin, OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    let at_mirror = mirror.reference("app:v1");
    let copy = push_image_parts(&mirror, &at_mirror, LAZY_LAYER, 7).await;
    mirror
        .client
        .put_manifest(&at_mirror, OCI_MANIFEST, copy)
        .await
        .unwrap();

    let mut opts = oci_support::options(&origin.registry, origin.scratch.path().join("none.json"));
    opts.insecure_hosts.push(mirror.registry.host());
    opts.mirrors = HashMap::from([(origin.registry.host(), vec![mirror.registry.host()])]);
    let client = RegistryClient::new(opts).unwrap();

    let origin_before = origin.registry.blob_bytes_served();
    let fetched = client.fetch_manifest(&at_origin).await.unwrap();
    let layer = fetched.manifest.layers()[0].digest().to_string();
    let range = client.read_range(&at_origin, &layer, 0..100).await.unwrap();
    assert_eq!(range.len(), 100);
    assert!(
        mirror.registry.blob_bytes_served() >= 100,
        "served by the mirror"
    );
    assert_eq!(
        origin.registry.blob_bytes_served(),
        origin_before,
        "origin untouched"
    );

    // Content the mirror lacks comes from the origin.
    let only_at_origin = origin.reference("only:v1");
    let blob = b"only the origin has this".to_vec();
    let digest = sha256_digest(&blob);
    origin
        .client
        .push_blob_bytes(&only_at_origin, &digest, blob.clone())
        .await
        .unwrap();
    assert_eq!(
        client
            .fetch_blob(&only_at_origin, &digest, 100)
            .await
            .unwrap(),
        blob
    );

    // A mirror that is down is passed over (and then skipped for a while).
    mirror.registry.stop();
    let again = client.read_range(&at_origin, &layer, 0..100).await.unwrap();
    assert_eq!(again, range);
    assert!(origin.registry.blob_bytes_served() >= origin_before + 100);
    let started = std::time::Instant::now();
    client
        .read_range(&at_origin, &layer, 100..200)
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "a down mirror is not retried on every read"
    );

    // Pushes go to the registry named, never to a mirror.
    let pushed = origin.reference("pushed:v1");
    let data = b"pushed".to_vec();
    let digest = sha256_digest(&data);
    client
        .push_blob_bytes(&pushed, &digest, data.clone())
        .await
        .unwrap();
    assert_eq!(
        origin
            .client
            .fetch_blob(&pushed, &digest, 10)
            .await
            .unwrap(),
        data
    );
}

//! `lazy-oci`'s registry client against the real Debian `docker-registry`:
//! what users see when things go wrong (missing content, registry down,
//! authentication, corrupted storage).

mod oci_support;

use std::time::{Duration, Instant};

use lazy_oci::{
    ClientOptions, CredentialState, OCI_MANIFEST, OciError, PushOutcome, Reference, RegistryClient,
    sha256_digest,
};
use lazy_testkit::registry::TestRegistry;
use oci_support::{
    Fixture, LAZY_LAYER, OCI_CONFIG, descriptor, json, options, pseudo_random, push_image_parts,
    write_docker_config,
};
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn not_found_errors_name_what_is_missing() {
    let fx = Fixture::new();
    let r = fx.reference("missing/repo:nope");
    let err = fx.client.fetch_manifest(&r).await.unwrap_err();
    assert!(matches!(err, OciError::ManifestNotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("manifest unknown: {}/missing/repo:nope", fx.registry.host())
    );

    let digest = sha256_digest(b"never pushed");
    let err = fx.client.fetch_blob(&r, &digest, 100).await.unwrap_err();
    assert!(matches!(err, OciError::BlobNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&digest), "{err}");
    let err = fx.client.open_blob(&r, &digest, 12).await.unwrap_err();
    assert!(matches!(err, OciError::BlobNotFound { .. }), "{err}");
    let err = fx.client.read_range(&r, &digest, 0..4).await.unwrap_err();
    assert!(matches!(err, OciError::BlobNotFound { .. }), "{err}");

    // A manifest referring to blobs the registry lacks is refused with its message.
    let bad = json(serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"absent"), "layers": [],
    }));
    let err = fx
        .client
        .put_manifest(&r, OCI_MANIFEST, bad)
        .await
        .unwrap_err();
    let OciError::UnexpectedStatus { status, body, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*status, 400, "{err}");
    assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{err}");
}

#[tokio::test]
async fn stopped_registry_is_unreachable_then_back() {
    let mut fx = Fixture::new();
    let r = fx.reference("down/up:v1");
    let manifest = push_image_parts(&fx, &r, LAZY_LAYER, 20).await;
    let digest = fx
        .client
        .put_manifest(&r, OCI_MANIFEST, manifest)
        .await
        .unwrap();

    fx.registry.stop();
    let opts = ClientOptions {
        timeout: Duration::from_secs(2),
        retries: 2,
        ..fx.client.options().clone()
    };
    let client = RegistryClient::new(opts).unwrap();
    let started = Instant::now();
    let err = client.fetch_manifest(&r).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, OciError::Unreachable { attempts: 3, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&fx.registry.host()) && msg.contains("unreachable after 3 attempt"),
        "{msg}"
    );

    fx.registry.restart().unwrap();
    assert_eq!(client.fetch_manifest(&r).await.unwrap().digest, digest);
}

#[tokio::test]
async fn htpasswd_registry_needs_docker_config_credentials() {
    let registry = TestRegistry::start_with_htpasswd("alice", "s3cret").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let r: Reference = format!("{}/auth/image:v1", registry.host())
        .parse()
        .unwrap();
    let data = pseudo_random(500, 30);
    let digest = sha256_digest(&data);

    let anonymous =
        RegistryClient::new(options(&registry, scratch.path().join("none.json"))).unwrap();
    let err = anonymous.check_version(&registry.host()).await.unwrap_err();
    assert!(
        matches!(
            err,
            OciError::Unauthorized {
                status: 401,
                credentials: CredentialState::NoConfig { .. },
                ..
            }
        ),
        "{err}"
    );
    let err = anonymous
        .push_blob_bytes(&r, &digest, data.clone())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&registry.host()) && msg.contains("auth/image"),
        "{msg}"
    );
    assert!(msg.contains("no credentials found"), "{msg}");

    let wrong_dir = scratch.path().join("wrong");
    std::fs::create_dir(&wrong_dir).unwrap();
    let wrong = write_docker_config(&wrong_dir, &registry.host(), "alice", "guess");
    let rejected = RegistryClient::new(options(&registry, wrong)).unwrap();
    let err = rejected.fetch_manifest(&r).await.unwrap_err();
    assert!(
        matches!(
            err,
            OciError::Unauthorized {
                credentials: CredentialState::Rejected { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("were rejected"), "{err}");

    let good = write_docker_config(
        scratch.path(),
        &format!("https://{}", registry.host()),
        "alice",
        "s3cret",
    );
    let client = RegistryClient::new(options(&registry, good)).unwrap();
    client.check_version(&registry.host()).await.unwrap();
    assert_eq!(
        client
            .push_blob_bytes(&r, &digest, data.clone())
            .await
            .unwrap(),
        PushOutcome::Uploaded
    );
    assert_eq!(client.fetch_blob(&r, &digest, 1000).await.unwrap(), data);
    let log = registry.log();
    assert!(
        !log.contains("s3cret"),
        "registry log must not contain the password"
    );
}

#[tokio::test]
async fn tampered_blob_fails_verification() {
    let fx = Fixture::new();
    let r = fx.reference("tamper/blob:t");
    let data = pseudo_random(64 * 1024, 40);
    let digest = sha256_digest(&data);
    fx.client
        .push_blob_bytes(&r, &digest, data.clone())
        .await
        .unwrap();

    let mut corrupted = data.clone();
    corrupted[1000] ^= 0xff;
    std::fs::write(fx.registry.blob_data_path(&digest), &corrupted).unwrap();

    let err = fx
        .client
        .fetch_blob(&r, &digest, 1 << 20)
        .await
        .unwrap_err();
    let OciError::DigestMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(expected, &digest);
    assert_eq!(actual, &sha256_digest(&corrupted));

    let size = u64::try_from(data.len()).unwrap();
    let mut stream = fx.client.open_blob(&r, &digest, size).await.unwrap();
    let mut out = Vec::new();
    let err = stream.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains(&digest), "{err}");

    // A truncated blob is caught as well.
    std::fs::write(fx.registry.blob_data_path(&digest), &data[..100]).unwrap();
    let err = fx
        .client
        .fetch_blob(&r, &digest, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
}

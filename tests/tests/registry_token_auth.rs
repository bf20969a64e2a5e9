//! The Bearer token flow against the real `docker-registry` in token-auth
//! mode, with a token server that signs real JWTs the registry verifies.

mod oci_support;

use lazy_oci::{
    CredentialState, OCI_MANIFEST, OciError, PushOutcome, Reference, RegistryClient, sha256_digest,
};
use lazy_testkit::registry::TestRegistry;
use oci_support::{options, pseudo_random, write_docker_config};

#[tokio::test]
async fn bearer_tokens_from_docker_config_credentials() {
    let registry = TestRegistry::start_with_token_auth("bob", "hunter2").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let r: Reference = format!("{}/token/image:v1", registry.host())
        .parse()
        .unwrap();
    let data = pseudo_random(3000, 50);
    let digest = sha256_digest(&data);

    // Anonymous: the API check passes with an anonymous token, pushing does not.
    let anonymous =
        RegistryClient::new(options(&registry, scratch.path().join("none.json"))).unwrap();
    anonymous.check_version(&registry.host()).await.unwrap();
    let err = anonymous
        .push_blob_bytes(&r, &digest, data.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OciError::Unauthorized {
                credentials: CredentialState::NoConfig { .. },
                ..
            }
        ),
        "{err}"
    );

    // Wrong password: the token server refuses.
    let wrong_dir = scratch.path().join("wrong");
    std::fs::create_dir(&wrong_dir).unwrap();
    let wrong = write_docker_config(&wrong_dir, &registry.host(), "bob", "guess");
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

    // Right password: push and pull work with scoped tokens.
    let good = write_docker_config(scratch.path(), &registry.host(), "bob", "hunter2");
    let client = RegistryClient::new(options(&registry, good)).unwrap();
    let outcome = client
        .push_blob_bytes(&r, &digest, data.clone())
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let config_digest = sha256_digest(&config);
    client
        .push_blob_bytes(&r, &config_digest, config.clone())
        .await
        .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.lazyfs.layer.v1", "digest": digest, "size": data.len()}],
    }))
    .unwrap();
    let manifest_digest = client
        .put_manifest(&r, OCI_MANIFEST, manifest)
        .await
        .unwrap();
    assert_eq!(
        client.fetch_manifest(&r).await.unwrap().digest,
        manifest_digest
    );
    assert_eq!(client.fetch_blob(&r, &digest, 1 << 20).await.unwrap(), data);

    // Tokens are cached per scope: more pulls ask the token server nothing.
    let issued = registry.token_requests();
    for _ in 0..3 {
        client.fetch_manifest(&r).await.unwrap();
        let range = client.read_range(&r, &digest, 100..200).await.unwrap();
        assert_eq!(range, data[100..200]);
    }
    assert_eq!(registry.token_requests(), issued, "tokens must be reused");

    // A clone shares the cache; another repository needs its own token.
    let other: Reference = format!("{}/token/other:v1", registry.host())
        .parse()
        .unwrap();
    let err = client.clone().fetch_manifest(&other).await.unwrap_err();
    assert!(matches!(err, OciError::ManifestNotFound { .. }), "{err}");
    assert_eq!(registry.token_requests(), issued + 1);
}

//! Helpers shared by the registry client tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use lazy_oci::{ClientOptions, OCI_MANIFEST, Reference, RegistryClient, sha256_digest};
use lazy_testkit::registry::TestRegistry;

pub const LAZY_LAYER: &str = "application/vnd.lazyfs.layer.v1";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Client options for a test registry: plain HTTP, short timeout, and a
/// docker config path of the test's own (never the machine's).
pub fn options(registry: &TestRegistry, docker_config: PathBuf) -> ClientOptions {
    ClientOptions {
        insecure_hosts: vec![registry.host()],
        timeout: Duration::from_secs(10),
        retries: 1,
        docker_config: Some(docker_config),
        ..ClientOptions::default()
    }
}

/// A fresh anonymous registry, a client for it and a scratch dir.
pub struct Fixture {
    pub registry: TestRegistry,
    pub client: RegistryClient,
    pub scratch: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let registry = TestRegistry::start().expect("start docker-registry");
        let scratch = tempfile::tempdir().unwrap();
        let opts = options(&registry, scratch.path().join("no-docker-config.json"));
        let client = RegistryClient::new(opts).unwrap();
        Self {
            registry,
            client,
            scratch,
        }
    }

    pub fn reference(&self, name: &str) -> Reference {
        format!("{}/{name}", self.registry.host()).parse().unwrap()
    }
}

/// Deterministic incompressible test data.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn json(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

pub fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": sha256_digest(data), "size": data.len()})
}

/// Pushes a config and one layer and returns an OCI manifest referencing them.
pub async fn push_image_parts(fx: &Fixture, r: &Reference, layer_type: &str, seed: u64) -> Vec<u8> {
    let config = json(serde_json::json!({"architecture": "amd64", "os": "linux", "seed": seed}));
    let layer = pseudo_random(4096, seed);
    for blob in [&config, &layer] {
        let digest = sha256_digest(blob);
        fx.client
            .push_blob_bytes(r, &digest, blob.clone())
            .await
            .unwrap();
    }
    json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(layer_type, &layer)],
        "annotations": {"dev.lazyfs.format": "1"},
    }))
}

/// Writes a docker `config.json` with `user:password` for `host` into `dir`.
pub fn write_docker_config(
    dir: &std::path::Path,
    host: &str,
    user: &str,
    password: &str,
) -> std::path::PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

//! The daemon's interfaces: Prometheus metrics over HTTP, and malformed
//! metadata from a registry (an error for the client, never a panic).

mod common;

use std::io::{Read, Write};

use common::{Lazyfsd, convert_into_registry, convert_with};
use lazy_control::protocol::{PullPolicy, RegistryCredentials, Request, Response};
use lazy_oci::ClientOptions;
use lazy_testkit::images::write_sample_image;
use lazy_testkit::layout::{TestCompression, digest_of};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn privileged_metrics_endpoint_reports_fetches() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_sample_image(&src, "v1", TestCompression::Gzip).unwrap();
    let registry = TestRegistry::start().unwrap();
    let image = format!("{}/sample:lazy", registry.host());
    convert_into_registry(&src, "v1", &image, &registry.host(), 64 * 1024);
    let addr = format!("127.0.0.1:{}", free_port());
    let daemon = Lazyfsd::start(
        &work.path().join("d"),
        &registry.host(),
        &format!("metrics_address = {addr:?}"),
    );
    let layers = daemon.attach(&image);
    let passwd = std::fs::read(std::path::Path::new(&layers[0].path).join("etc/passwd")).unwrap();
    let body = http_get(&addr, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("lazyfs_attached_layers 2"), "{body}");
    let fetched: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("lazyfs_fetched_bytes_total "))
        .expect("fetched bytes metric")
        .parse()
        .unwrap();
    assert!(
        fetched > 0 && fetched < 10_000,
        "one small file fetched: {fetched} for {} bytes",
        passwd.len()
    );
    assert!(
        body.contains("lazyfs_fetch_seconds_bucket"),
        "latency histogram"
    );
    assert!(http_get(&addr, "/other").starts_with("HTTP/1.1 404"));
}

#[test]
fn privileged_malformed_metadata_is_an_error_not_a_crash() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let daemon = Lazyfsd::start(&work.path().join("d"), &host, "");
    // Lazy manifests whose layer blob is garbage, truncated, or lies about its metadata offset.
    type Case = (&'static str, Vec<u8>, Option<(u64, u64)>);
    let cases: Vec<Case> = vec![
        ("garbage", lazy_testkit::images::noise(5000, 3), None),
        ("tiny", b"LAZY".to_vec(), None),
        (
            "lying",
            lazy_testkit::images::noise(5000, 4),
            Some((100, 4900)),
        ),
    ];
    for (name, blob, annotation) in cases {
        let image = push_fake_lazy_image(&host, name, &blob, annotation);
        let result = daemon.client().call(&Request::Attach {
            image: image.clone(),
            pin: false,
            prefetch: None,
            with_config: false,
            pull: PullPolicy::Always,
            credentials: None,
        });
        let err = result
            .expect_err("attaching a malformed layer fails")
            .to_string();
        assert!(err.contains(&image), "error names the image: {err}");
        assert!(daemon.client().is_up(), "daemon survived {name}");
    }
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
}

fn push_fake_lazy_image(
    host: &str,
    name: &str,
    blob: &[u8],
    annotation: Option<(u64, u64)>,
) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = lazy_oci::RegistryClient::new(lazy_oci::ClientOptions {
        insecure_hosts: vec![host.to_owned()],
        ..Default::default()
    })
    .unwrap();
    let reference: lazy_oci::Reference = format!("{host}/{name}:lazy").parse().unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let mut annotations = serde_json::json!({});
    if let Some((offset, len)) = annotation {
        annotations = serde_json::json!({"dev.lazyfs.meta.offset": offset.to_string(), "dev.lazyfs.meta.length": len.to_string()});
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.lazyfs.layer.v1", "digest": digest_of(blob), "size": blob.len(), "annotations": annotations}],
        "annotations": {"dev.lazyfs.format": "1"},
    });
    runtime.block_on(async {
        client
            .push_blob_bytes(&reference, &digest_of(&config), config.clone())
            .await
            .unwrap();
        client
            .push_blob_bytes(&reference, &digest_of(blob), blob.to_vec())
            .await
            .unwrap();
        client
            .put_manifest(
                &reference,
                "application/vnd.oci.image.manifest.v1+json",
                serde_json::to_vec(&manifest).unwrap(),
            )
            .await
            .unwrap();
    });
    reference.to_string()
}

#[test]
fn privileged_attach_with_request_credentials() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start_with_htpasswd("alice", "s3cret-pw").unwrap();
    let host = registry.host();
    // The converter logs in through a docker config of its own.
    let docker_config = work.path().join("docker.json");
    let auths = serde_json::json!({"auths": {host.clone(): {"username": "alice", "password": "s3cret-pw"}}});
    std::fs::write(&docker_config, auths.to_string()).unwrap();
    let src = work.path().join("src");
    write_sample_image(&src, "v1", TestCompression::Gzip).unwrap();
    let image = format!("{host}/private:lazy");
    let options = ClientOptions {
        insecure_hosts: vec![host.clone()],
        docker_config: Some(docker_config),
        ..Default::default()
    };
    convert_with(&src, "v1", &image, options, 64 * 1024);

    let daemon = Lazyfsd::start(&work.path().join("d"), &host, "");
    let attach = |credentials: Option<RegistryCredentials>| {
        daemon.client().call(&Request::Attach {
            image: image.clone(),
            pin: false,
            prefetch: None,
            with_config: false,
            pull: PullPolicy::Always,
            credentials,
        })
    };
    let err = attach(None).expect_err("lazyfsd's own config has no login for it");
    assert!(err.to_string().contains("private"), "{err}");
    let wrong = RegistryCredentials {
        username: "alice".into(),
        password: "wrong".into(),
    };
    assert!(attach(Some(wrong)).is_err());
    let right = RegistryCredentials {
        username: "alice".into(),
        password: "s3cret-pw".into(),
    };
    let Ok(Response::Layers(layers)) = attach(Some(right)) else {
        panic!("attach with the right login")
    };
    // Chunk fetches later use the same login.
    let motd = std::path::Path::new(&layers[0].path).join("etc/motd");
    assert_eq!(
        std::fs::read(motd).unwrap(),
        b"welcome to the lazy test image\n"
    );
    assert!(daemon.stats().fetched_chunks > 0);
    assert!(
        !daemon.log().contains("s3cret-pw"),
        "the password is never logged"
    );
}

#[test]
fn privileged_attach_one_layer_by_digest() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let src = work.path().join("src");
    write_sample_image(&src, "v1", TestCompression::Gzip).unwrap();
    let image = format!("{host}/sample:lazy");
    convert_into_registry(&src, "v1", &image, &host, 64 * 1024);
    // The layer digests, from a full attach on another daemon.
    let probe = Lazyfsd::start(&work.path().join("probe"), &host, "");
    let layers = probe.attach(&image);
    drop(probe);

    let daemon = Lazyfsd::start(&work.path().join("d"), &host, "");
    let attach_layer = |digest: &str| {
        daemon.client().call(&Request::AttachLayer {
            image: image.clone(),
            digest: digest.to_owned(),
            credentials: None,
        })
    };
    let Ok(Response::Layers(one)) = attach_layer(&layers[0].digest) else {
        panic!("attach the base layer alone")
    };
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].digest, layers[0].digest);
    let motd = std::path::Path::new(&one[0].path).join("etc/motd");
    assert_eq!(
        std::fs::read(motd).unwrap(),
        b"welcome to the lazy test image\n"
    );
    assert_eq!(daemon.stats().attached_layers, 1, "only that layer");

    let missing = format!("sha256:{}", "0".repeat(64));
    let err = attach_layer(&missing).expect_err("no such blob");
    assert!(err.to_string().contains(&missing), "{err}");
}

#[test]
fn privileged_absent_names_stay_absent_and_reattached_layers_appear_at_once() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let src = work.path().join("src");
    write_sample_image(&src, "v1", TestCompression::Gzip).unwrap();
    let image = format!("{host}/sample:lazy");
    convert_into_registry(&src, "v1", &image, &host, 64 * 1024);
    let daemon = Lazyfsd::start(&work.path().join("d"), &host, "");
    let layers = daemon.attach(&image);
    let base = std::path::PathBuf::from(&layers[0].path);
    // Inside a layer the kernel may remember a miss; it stays a miss.
    for _ in 0..2 {
        let err = std::fs::metadata(base.join("etc/absent")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
    // At the root a miss is not remembered: a layer attached after a
    // failed lookup of its directory is there at once.
    daemon
        .client()
        .call(&Request::Detach {
            target: image.clone(),
        })
        .unwrap();
    assert!(!base.exists(), "detached");
    daemon.attach(&image);
    assert_eq!(
        std::fs::read(base.join("etc/motd")).unwrap(),
        b"welcome to the lazy test image\n"
    );
}

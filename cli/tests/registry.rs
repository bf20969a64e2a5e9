//! Registry behaviour seen through lazyctl: Docker schema 2 sources,
//! credentials, and clear errors for unknown images, auth failures, a
//! registry that is down, and a lazy blob corrupted in storage.

mod common;

use base64::Engine as _;
use common::{assert_same_tree, lazyctl_err, lazyctl_ok, run, umoci_unpack, write_sample};
use lazy_testkit::registry::TestRegistry;

fn skopeo_copy(args: &[&str]) {
    lazy_testkit::require_program("skopeo", "skopeo").unwrap();
    let mut all = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    all.extend_from_slice(args);
    run("skopeo", &all);
}

#[test]
fn privileged_docker_schema2_source_converts() {
    lazy_testkit::require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    skopeo_copy(&[
        "--format",
        "v2s2",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{host}/docker:v1"),
    ]);
    let lazy = format!("{host}/docker:lazy");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        &format!("{host}/docker:v1"),
        &lazy,
    ]);
    let rootfs = work.path().join("rootfs");
    lazyctl_ok(&[
        "unpack",
        "--insecure",
        &host,
        &lazy,
        rootfs.to_str().unwrap(),
    ]);
    let reference = work.path().join("reference");
    umoci_unpack(&src, "v1", &reference);
    assert_same_tree(&reference, &rootfs);
}

#[test]
fn unknown_image_is_named_in_the_error() {
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let missing = format!("{host}/nothing/here:v9");
    let err = lazyctl_err(&["inspect", "--insecure", &host, &missing]);
    assert!(err.contains(&missing), "{err}");
    let err = lazyctl_err(&[
        "convert",
        "--insecure",
        &host,
        &missing,
        &format!("{host}/out:v1"),
    ]);
    assert!(err.contains(&missing), "{err}");
}

#[test]
fn registry_down_is_a_clear_error_within_the_timeout() {
    let mut registry = TestRegistry::start().unwrap();
    let host = registry.host();
    registry.stop();
    let started = std::time::Instant::now();
    let err = lazyctl_err(&[
        "inspect",
        "--insecure",
        &host,
        "--timeout",
        "2",
        "--retries",
        "1",
        &format!("{host}/x:v1"),
    ]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains(&host) && err.contains("unreachable"), "{err}");
}

#[test]
fn credentials_come_from_the_docker_config() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let registry = TestRegistry::start_with_htpasswd("alice", "s3cret").unwrap();
    let host = registry.host();
    skopeo_copy(&[
        "--dest-creds",
        "alice:s3cret",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{host}/private:v1"),
    ]);
    let source = format!("{host}/private:v1");
    let lazy = format!("{host}/private:lazy");

    let empty_config = work.path().join("empty.json");
    std::fs::write(&empty_config, "{}").unwrap();
    let err = lazyctl_err(&[
        "convert",
        "--insecure",
        &host,
        "--docker-config",
        empty_config.to_str().unwrap(),
        &source,
        &lazy,
    ]);
    assert!(
        err.contains(&host) && err.to_lowercase().contains("unauthorized"),
        "{err}"
    );

    let config = work.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(b"alice:s3cret");
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--docker-config",
        cfg,
        &source,
        &lazy,
    ]);
    let report = lazyctl_ok(&[
        "inspect",
        "--insecure",
        &host,
        "--docker-config",
        cfg,
        &lazy,
    ]);
    assert!(report.contains("TOTAL"), "{report}");
}

#[test]
fn lazy_blob_corrupted_in_storage_fails_unpack() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let lazy = format!("{host}/corrupt:lazy");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        &format!("oci:{}:v1", src.display()),
        &lazy,
    ]);
    let report: serde_json::Value = serde_json::from_str(&lazyctl_ok(&[
        "inspect",
        "--json",
        "--insecure",
        &host,
        &lazy,
    ]))
    .unwrap();
    let digest = report["layers"][0]["digest"].as_str().unwrap();
    let data = registry.blob_data_path(digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&data, bytes).unwrap();
    let out = work.path().join("rootfs");
    let err = lazyctl_err(&["unpack", "--insecure", &host, &lazy, out.to_str().unwrap()]);
    assert!(err.contains(digest), "{err}");
}
